"""A sweep's search space (fahr_core.searchspace): every kind of --hp spec parsed, every bad one
refused in one line naming it, the grid's product, and the random draws repeatable by seed."""

from __future__ import annotations

import math

import pytest

from fahr_core import searchspace
from fahr_core.errors import UsageError


def test_a_grid_is_the_product_of_its_axes_in_order_with_the_fixed_values_apart():
    space = searchspace.parse(["lr=0.1,0.01,0.001", "layers=2,4", "epochs=3"])
    assert space.fixed == {"epochs": "3"}
    assert searchspace.points(space, None, seed=0) == [
        {"lr": lr, "layers": layers} for lr in ("0.1", "0.01", "0.001") for layers in ("2", "4")]


def test_an_escaped_comma_is_part_of_a_value():
    space = searchspace.parse([r"shape=64\,64", r"arch=a\,b,c"])
    assert space.fixed == {"shape": "64,64"}
    assert space.grid == {"arch": ("a,b", "c")}


def test_ranges_are_drawn_within_their_bounds_and_repeat_with_their_seed():
    space = searchspace.parse(["lr=loguniform:1e-4:1e-1", "x=uniform:-1:1", "layers=int:2:8", "opt=choice:adam,sgd"])
    first = searchspace.points(space, 50, seed=7)
    assert first == searchspace.points(space, 50, seed=7)  # same points, same order
    assert first != searchspace.points(space, 50, seed=8)
    assert len(first) == 50
    for point in first:
        assert 1e-4 <= float(point["lr"]) <= 1e-1
        assert -1 <= float(point["x"]) <= 1
        assert 2 <= int(point["layers"]) <= 8 and point["layers"] == str(int(point["layers"]))
        assert point["opt"] in ("adam", "sgd")
    assert {p["layers"] for p in first} == {str(n) for n in range(2, 9)}  # both ends included
    logs = sorted(math.log10(float(p["lr"])) for p in first)
    assert logs[0] < -3 and logs[-1] > -2  # drawn on the log scale, not bunched at the top


def test_a_grid_with_ranges_crosses_each_grid_point_with_the_same_draws():
    space = searchspace.parse(["opt=adam,sgd", "lr=loguniform:1e-4:1e-1"])
    found = searchspace.points(space, 3, seed=1)
    assert [p["opt"] for p in found] == ["adam"] * 3 + ["sgd"] * 3
    assert [p["lr"] for p in found[:3]] == [p["lr"] for p in found[3:]]


@pytest.mark.parametrize("specs, trials, says", [
    (["lr"], None, "expected NAME=VALUE"),
    (["1lr=0.1,0.2"], None, "not a hyperparameter name"),
    (["lr=0.1,0.2", "lr=0.3,0.4"], None, "given twice"),
    (["lr=0.1,,0.2"], None, "an empty value"),
    (["lr=0.1,0.1"], None, "listed twice"),
    (["lr=uniform:1"], 2, "uniform needs LOW:HIGH"),
    (["lr=uniform:a:b"], 2, "uniform needs LOW:HIGH"),
    (["lr=uniform:nan:1"], 2, "uniform needs LOW:HIGH"),
    (["lr=uniform:1:1"], 2, "uniform needs LOW < HIGH"),
    (["lr=loguniform:0:1"], 2, "loguniform needs 0 < LOW"),
    (["lr=loguniform:1:0.1"], 2, "loguniform needs LOW < HIGH"),
    (["n=int:1.5:3"], 2, "int needs LOW:HIGH, two whole numbers"),
    (["n=int:8:2"], 2, "int needs LOW <= HIGH"),
    (["opt=choice:adam"], 2, "choice needs two or more"),
    (["lr=uniform:0:1"], None, "give --trials"),
    (["lr=0.1,0.2"], 3, "no --hp is a range"),
    (["lr=0.1"], None, "nothing to sweep"),
    (["a=1,2,3,4,5,6,7,8,9,10", "b=1,2,3,4,5,6,7,8,9,10", "c=1,2,3,4,5,6,7,8,9,10,11"], None, "more than 1000"),
    (["lr=uniform:0:1"], 0, "--trials 0"),
])
def test_a_bad_spec_is_one_usage_error_naming_what_is_wrong(specs, trials, says):
    with pytest.raises(UsageError) as caught:
        searchspace.points(searchspace.parse(specs), trials, seed=0)
    assert says in caught.value.message
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("text, ok", [("val_loss:min", True), ("acc:max", True), ("acc", False),
                                      ("acc:best", False), (":min", False), ("a b:max", False)])
def test_the_objective_is_a_metric_and_min_or_max(text, ok):
    if ok:
        assert str(searchspace.objective(text)) == text
    else:
        with pytest.raises(UsageError, match="expected METRIC:min or METRIC:max"):
            searchspace.objective(text)


@pytest.mark.parametrize("text", ["sw-20260101-120000-abcd", ])
def test_a_sweep_id_made_is_valid(text):
    assert searchspace.validate_id(searchspace.new_id()) and searchspace.validate_id(text)


@pytest.mark.parametrize("text", ["", "sw-2026", "../x", "sw-20260101-120000-ABCD", "sw-20260101-120000-abcd\n"])
def test_an_id_that_is_not_a_sweeps_is_refused(text):
    with pytest.raises(UsageError, match="not a sweep id"):
        searchspace.validate_id(text)


def test_a_points_session_gives_every_checkpoint_location_a_folder_of_its_own():
    from fahr_core import sweeps
    from fahr_core.session import Session
    from fahr_core.values import Config

    class NoTrackers:  # a plugin manager with no tracker hook implemented
        class hook:
            job_started = job_metrics = job_ended = type("H", (), {"get_hookimpls": staticmethod(lambda: [])})

        def get_plugins(self):
            return []

    config = Config("sagemaker", {"checkpoint_s3_uri": "s3://b/ck/", "checkpoint_path": "", "output_path": "s3://b/o"},
                    {"checkpoint_s3_uri": "/p/fahr.toml", "checkpoint_path": "default", "output_path": "env"})
    session = Session(NoTrackers(), config)
    derived = sweeps.point_session(session, "sw-20261203-100000-abcd", 3)
    assert dict(derived.config) == {"checkpoint_s3_uri": "s3://b/ck/sw-20261203-100000-abcd/3", "checkpoint_path": "",
                                    "output_path": "s3://b/o"}
    assert derived.config.sources == config.sources and derived.config.driver == "sagemaker"
    assert dict(session.config)["checkpoint_s3_uri"] == "s3://b/ck/"  # the sweep's own is unchanged
    plain = Config("local", {"checkpoint_path": "", "output_path": "/j"}, {})
    assert sweeps.point_session(Session(NoTrackers(), plain), "sw-20261203-100000-abcd", 0).config is plain
