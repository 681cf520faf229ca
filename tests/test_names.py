"""Model image tags and job names (fahr_core.names), including hostile inputs."""

import random
import re
import string
from pathlib import Path

import pytest

from fahr_core import names
from fahr_core.errors import UsageError

DOCKER_REPO = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


def test_seed_rule():
    assert names.model_image_tag(Path("/a/b/foo/model.py")) == "foo/model"


@pytest.mark.parametrize(
    "path,tag",
    [("/x/My Project/Train Model.py", "my-project/train-model"),
     ("/x/__weird__/--name--.py", "weird/name"),
     ("/x/a..b/c__d.py", "a.b/c_d"),
     ("/x/Ünïcode-ok/t.py", "unicode-ok/t")],
)
def test_sanitised(path, tag):
    assert names.model_image_tag(Path(path)) == tag


def test_impossible_names_the_offending_characters():
    with pytest.raises(UsageError, match="'日本'.*cannot appear"):
        names.model_image_tag(Path("/x/日本/train.py"))
    with pytest.raises(UsageError, match="no letter or digit"):
        names.model_image_tag(Path("/x/___/train.py"))


def test_random_hostile_paths_give_valid_tags_and_job_names():
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "._- +@!#$%^&()[]{}~'"
    checked = 0
    for _ in range(2000):
        folder = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 300)))
        stem = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120)))
        try:
            tag = names.model_image_tag(Path("/x") / folder / f"{stem}.py")
        except UsageError:
            continue
        checked += 1
        assert DOCKER_REPO.match(tag) and len(tag) <= 255, tag
        job = names.job_name(tag)
        assert names.JOB_NAME.match(job) and len(job) <= 63, job
    assert checked > 1500


def test_job_names_are_unique_and_carry_the_time():
    made = {names.job_name("foo/model", now=0) for _ in range(200)}
    assert len(made) > 190  # 16 random bits: a clash among 200 is possible but rare
    assert all(n.startswith("foo-model-19700101-000000-") for n in made)


def test_long_tags_are_cut_to_63():
    job = names.job_name("a" * 250 + "/" + "b" * 100)
    assert len(job) <= 63 and names.JOB_NAME.match(job)


def test_validators():
    assert names.validate_model_tag("foo/model") == "foo/model"
    for bad in ("Foo/Model", "foo//model", "-foo", "", "foo/model:latest"):
        with pytest.raises(UsageError):
            names.validate_model_tag(bad)
    with pytest.raises(UsageError):
        names.validate_job_name("has_underscore")


@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "\x00"])
def test_a_trailing_newline_or_space_never_passes(suffix):
    # re's '$' matches before a trailing newline: the patterns must end the string for real.
    with pytest.raises(UsageError, match="not a valid job name"):
        names.validate_job_name("job-1" + suffix)
    with pytest.raises(UsageError, match="not a model image tag"):
        names.validate_model_tag("foo/model" + suffix)
    with pytest.raises(UsageError, match="not a model image tag"):
        names.validate_model_tag("foo" + suffix + "/model")
    assert not names.JOB_NAME.match("job-1" + suffix)


def test_validators_refuse_what_is_not_a_string():
    for bad in (None, 3, ["job-1"]):
        with pytest.raises(UsageError):
            names.validate_job_name(bad)
        with pytest.raises(UsageError):
            names.validate_model_tag(bad)
