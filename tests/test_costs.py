"""Costs before and after a job (issue 19 item 4; docs/sagemaker.md, "Costs"): the Price List's
answer read, its cache (expiry, corruption, atomic writes), the arithmetic of the estimate, of
max_cost and of the cost after a job; and a real local fit, which says it cost nothing.

The sagemaker driver's end-to-end cases, on the emulated AWS, are in test_costs_sagemaker.py.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from conftest import one_line_error, remove_local_jobs, run_fahr
from fahr_core import ConfigError, Price
from fahr_core import report
from fahr_sagemaker import pricing


def entry(usd="0.2300000000", unit="Hrs", usage="USE1-Train:ml.m5.xlarge", sku="ABCDEFGHIJKLMNOP") -> str:
    """One PriceList entry as GetProducts answers it: a JSON string (AWS CLI's documented shape)."""
    return json.dumps({
        "product": {"productFamily": "ML Instance", "sku": sku,
                    "attributes": {"servicecode": "AmazonSageMaker", "regionCode": "us-east-1",
                                   "instanceName": "ml.m5.xlarge", "platoinstancetype": "Training",
                                   "usagetype": usage, "location": "US East (N. Virginia)"}},
        "serviceCode": "AmazonSageMaker",
        "terms": {"OnDemand": {f"{sku}.JRTCKXETXF": {
            "priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                "unit": unit, "endRange": "Inf", "beginRange": "0", "appliesTo": [],
                "description": "$0.23 per Training ml.m5.xlarge instance hour",
                "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7", "pricePerUnit": {"USD": usd}}},
            "sku": sku, "effectiveDate": "2026-11-01T00:00:00Z", "offerTermCode": "JRTCKXETXF",
            "termAttributes": {}}}},
        "version": "20261101000000", "publicationDate": "2026-11-01T00:00:00Z"})


# -- the Price List's answer ------------------------------------------------------------------------


def test_the_on_demand_hourly_price_is_read_from_a_real_shaped_price_list():
    assert pricing.hourly_from_price_list([entry()]) == 0.23


def test_several_different_prices_are_no_price_not_a_guess():
    assert pricing.hourly_from_price_list([entry("0.23"), entry("0.207", sku="QRSTUVWXYZABCDEF")]) is None
    assert pricing.hourly_from_price_list([entry("0.23"), entry("0.2300000000", sku="QRSTUVWXYZABCDEF")]) == 0.23


@pytest.mark.parametrize("entries", [
    [], ["not json"], ["[1, 2]"], [entry(unit="GB-Mo")], [entry(usd="0.0000000000")], [entry(usd="NaN")],
    [entry(usd="lots")], [json.dumps({"terms": {"OnDemand": []}})],
])
def test_entries_without_an_hourly_price_give_none(entries):
    assert pricing.hourly_from_price_list(entries) is None


def test_a_spot_usage_line_is_not_the_on_demand_price():
    assert pricing.hourly_from_price_list([entry(), entry("0.07", usage="USE1-Train-Spot:ml.m5.xlarge",
                                                          sku="QRSTUVWXYZABCDEF")]) == 0.23


def test_the_request_asks_for_training_of_that_type_in_that_region():
    fields = {f["Field"]: f["Value"] for f in pricing.product_filters("ml.g5.xlarge", "eu-west-1")}
    assert fields == {"instanceName": "ml.g5.xlarge", "regionCode": "eu-west-1", "platoinstancetype": "Training"}


@pytest.mark.parametrize("region, endpoint", [("us-east-1", "us-east-1"), ("eu-central-1", "eu-central-1"),
                                              ("ap-south-1", "ap-south-1"), ("eu-west-1", "us-east-1"),
                                              ("us-west-2", "us-east-1"), ("cn-north-1", "cn-northwest-1")])
def test_the_price_list_is_asked_where_its_endpoint_is(region, endpoint):
    assert pricing.endpoint_region(region) == endpoint


# -- the cache ----------------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    pricing._memo.clear()
    yield tmp_path / "xdg" / "fahr" / "sagemaker" / "prices.json"
    pricing._memo.clear()


def test_an_answer_is_cached_under_fahrs_cache_folder_for_a_week(cache):
    now = time.time()
    pricing.remember("us-east-1 ml.m5.xlarge", 0.23, now=now)
    assert cache.is_file()
    assert pricing.cached("us-east-1 ml.m5.xlarge", now=now + 7 * 86400 - 1) == 0.23
    assert pricing.cached("us-east-1 ml.m5.xlarge", now=now + 7 * 86400 + 1) is None  # expired: asked again
    assert pricing.cached("eu-west-1 ml.m5.xlarge", now=now) is None


@pytest.mark.parametrize("content", [
    b"", b"{", b"\x00\xff garbage", b"[]", b'{"version": 2, "prices": {}}', b'{"version": 1, "prices": []}',
    b'{"version": 1, "prices": {"us-east-1 ml.m5.xlarge": {"usd_per_hour": "0.23", "at": 1}}}',
    b'{"version": 1, "prices": {"us-east-1 ml.m5.xlarge": {"usd_per_hour": -1, "at": 1}}}',
    b'{"version": 1, "prices": {"us-east-1 ml.m5.xlarge": {"usd_per_hour": 1e999, "at": 1}}}',
    b'{"version": 1, "prices": {"us-east-1 ml.m5.xlarge": {"usd_per_hour": 0.23, "at": 1, "x": 1}}}',
])
def test_a_corrupt_cache_is_ignored_and_written_anew(cache, content):
    cache.parent.mkdir(parents=True)
    cache.write_bytes(content)
    assert pricing.cached("us-east-1 ml.m5.xlarge") is None
    pricing.remember("us-east-1 ml.g5.xlarge", 1.408)
    assert json.loads(cache.read_bytes())["prices"].keys() == {"us-east-1 ml.g5.xlarge"}
    assert pricing.cached("us-east-1 ml.g5.xlarge") == 1.408


def test_a_cached_time_to_come_is_not_trusted(cache):
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps({"version": 1, "prices": {
        "us-east-1 ml.m5.xlarge": {"usd_per_hour": 0.01, "at": time.time() + 365 * 86400}}}))
    assert pricing.cached("us-east-1 ml.m5.xlarge") is None


def test_a_cache_that_is_a_link_is_not_read(cache, tmp_path):
    elsewhere = tmp_path / "planted.json"
    elsewhere.write_text(json.dumps({"version": 1, "prices": {
        "us-east-1 ml.m5.xlarge": {"usd_per_hour": 0.01, "at": time.time()}}}))
    cache.parent.mkdir(parents=True)
    cache.symlink_to(elsewhere)
    assert pricing.cached("us-east-1 ml.m5.xlarge") is None


def test_a_huge_cache_is_not_read(cache):
    cache.parent.mkdir(parents=True)
    prices = {f"us-east-1 ml.m{i}.xlarge": {"usd_per_hour": 0.23, "at": time.time()} for i in range(40000)}
    cache.write_text(json.dumps({"version": 1, "prices": prices}))
    assert cache.stat().st_size > pricing.CACHE_MAX_BYTES
    assert pricing.cached("us-east-1 ml.m1.xlarge") is None


def test_the_cache_is_written_whole_or_not_at_all(cache, monkeypatch):
    pricing.remember("us-east-1 ml.m5.xlarge", 0.23)
    before = cache.read_bytes()

    def interrupted(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pricing.os, "replace", interrupted)
    pricing.remember("us-east-1 ml.g5.xlarge", 1.408)  # no error: the price is asked again next time
    assert cache.read_bytes() == before  # the old file whole, never half a new one
    assert sorted(os.listdir(cache.parent)) == ["prices.json"]  # no partial file left behind


def test_a_fresh_cache_answers_without_asking_aws(cache, monkeypatch):
    pricing.remember("us-east-1 ml.m5.xlarge", 0.23)
    monkeypatch.setattr(pricing, "ask", lambda *a: pytest.fail("the Price List was asked"))
    monkeypatch.setattr("fahr_sagemaker.aws.region_of", lambda config: "us-east-1")
    assert pricing.hourly({"price_per_hour": 0.0}, "ml.m5.xlarge") == (0.23, "AWS Price List, cached")


def test_price_per_hour_overrides_without_asking_aws(cache, monkeypatch):
    monkeypatch.setattr(pricing, "ask", lambda *a: pytest.fail("the Price List was asked"))
    assert pricing.hourly({"price_per_hour": 0.5}, "ml.m5.xlarge") == (0.5, "config.price_per_hour")


def test_no_permission_is_an_unknown_price_not_an_error(cache, monkeypatch):
    from botocore.exceptions import ClientError

    def denied(*args):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetProducts")

    monkeypatch.setattr(pricing, "ask", denied)
    monkeypatch.setattr("fahr_sagemaker.aws.region_of", lambda config: "us-east-1")
    usd, why = pricing.hourly({"price_per_hour": 0.0}, "ml.m5.xlarge")
    assert usd is None and "pricing:GetProducts is not allowed" in why
    assert not cache.exists()  # nothing cached: asked again next time


def test_the_ceiling_is_that_of_the_dearest_fallback_type(cache, monkeypatch):
    prices = {"ml.g5.xlarge": 1.408, "ml.g4dn.xlarge": 0.7364}
    monkeypatch.setattr(pricing, "hourly", lambda config, kind: (prices[kind], "AWS Price List"))
    price = pricing.price({}, ["ml.g4dn.xlarge", "ml.g5.xlarge"], 2, 3600, False)
    assert (price.per_hour, price.resources) == (1.408, "2 × ml.g5.xlarge")


# -- the arithmetic -------------------------------------------------------------------------------------


def test_the_estimate_line_has_the_exact_numbers():
    price = Price(per_hour=0.23, instances=2, max_seconds=7200, source="AWS Price List")
    assert price.hourly == 0.46 and price.ceiling == pytest.approx(0.92)
    assert report.estimate_line(price) == ("about $0.2300/h × 2 instances; at most $0.9200 if it runs max_run "
                                           "(7200 s) — AWS Price List")
    spot = Price(per_hour=1.408, instances=1, max_seconds=86400, spot=True)
    assert report.estimate_line(spot).startswith("about $1.41/h × 1 instance; at most $33.79 if it runs max_run "
                                                 "(86400 s) (spot: the on-demand price is the ceiling")


def test_an_unknown_price_is_said_never_guessed():
    line = report.estimate_line(Price(per_hour=None, instances=1, max_seconds=60, source="no network",
                                      resources="1 × ml.m5.xlarge"))
    assert line.startswith("price unknown (1 × ml.m5.xlarge): no network; set config.price_per_hour")
    assert "$" not in line


def test_max_cost_refuses_a_ceiling_above_it_with_the_numbers():
    price = Price(per_hour=0.115, instances=2, max_seconds=86400)
    with pytest.raises(ConfigError) as refused:
        report.refuse_over(price, 5.0, "sagemaker")
    assert refused.value.message == ("the run may cost up to $5.52 ($0.1150/h × 2 × 86400 s of max_run), more than "
                                     "max_cost $5; lower max_run or train_instance_count, or raise max_cost")
    report.refuse_over(price, 5.52, "sagemaker")  # exactly the ceiling: allowed
    report.refuse_over(price, 0.0, "sagemaker")  # 0: no limit


def test_max_cost_with_an_unknown_price_refuses_and_says_how_to_set_it():
    with pytest.raises(ConfigError, match=r"price is unknown \(no network\); set the price of one instance-hour "
                                          r"with --config.price_per_hour=DOLLARS"):
        report.refuse_over(Price(per_hour=None, max_seconds=60, source="no network"), 1.0, "sagemaker")
    with pytest.raises(ConfigError, match="driver 'mine' does not say what a run costs"):
        report.refuse_over(None, 1.0, "mine")
    report.refuse_over(Price(per_hour=None, source="no network"), 0.0, "sagemaker")  # no limit: no refusal


def test_price_per_hour_overrides_any_drivers_price():
    price = Price(per_hour=0.23, instances=3, max_seconds=60, source="AWS Price List")
    over = report.overridden(price, {"price_per_hour": 0.5})
    assert (over.per_hour, over.instances, over.source) == (0.5, 3, "config.price_per_hour")
    assert report.overridden(price, {"price_per_hour": 0.0}) is price
    assert report.overridden(None, {"price_per_hour": 0.5}) is None


def test_the_cost_after_a_job_is_billable_seconds_times_the_price_and_spot_savings():
    price = Price(per_hour=0.23, instances=2, spot=True, resources="2 × ml.m5.xlarge")
    assert price.cost(1800) == pytest.approx(0.23)
    line = report.cost_line(price, training_seconds=3600, billable_seconds=1800)
    assert line == ("cost: about $0.2300 (1800 billable s × 2 × $0.2300/h, 2 × ml.m5.xlarge); "
                    "spot saved $0.2300 (50%)")
    assert "saved" not in report.cost_line(Price(per_hour=0.23), 3600, 3600)
    assert report.cost_line(Price(per_hour=None, source="no network"), 10, 10) == \
        "cost: unknown (10 billable s): no network"
    assert report.cost_line(None, 10, 10) == ""


def test_a_free_run_says_its_duration_and_resources():
    price = Price(per_hour=0.0, instances=2, source="local jobs cost nothing", resources="2 hosts, cpus 1 each")
    assert report.cost_line(price, 12.34, 12.34) == "cost: $0 (ran 12.3 s, 2 hosts, cpus 1 each): local jobs cost nothing"


# -- a real local fit ------------------------------------------------------------------------------------


@pytest.mark.docker
def test_a_local_fit_says_it_cost_nothing_with_its_duration_and_limits(docker_engine, tmp_path):
    project = tmp_path / "i19costs"
    project.mkdir()
    (project / "train.py").write_text("print('trained')\n")
    jobs = tmp_path / "jobs"
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(jobs)}
    try:
        fit = run_fahr("fit", "i19costs/train.py", "--config.cpus=0.5", "--config.memory=256m",
                       "--config.max_cost=0.01", env=env, cwd=tmp_path, check=0)
        [line] = [line for line in fit.stderr.splitlines() if line.startswith("fahr cost:")]
        assert line.startswith("fahr cost: $0 (ran ")
        assert line.endswith(" s, 1 host, cpus 0.5 each, memory 256 MiB each): local jobs run on this machine "
                             "and cost nothing")
        listed = run_fahr("jobs", "--cost", "--json", env=env, cwd=tmp_path, check=0)
        [job] = json.loads(listed.stdout)
        assert (job["cost"], job["price_per_hour"], job["instances"]) == (0.0, 0.0, 1)
        assert job["duration_seconds"] is not None
        table = run_fahr("jobs", "--cost", env=env, cwd=tmp_path, check=0).stdout.splitlines()
        assert "COST" in table[0].split() and "$0" in table[1].split()
    finally:
        remove_local_jobs(jobs, docker_engine, "i19costs/train")


def test_max_cost_must_be_dollars(tmp_path):
    proc = run_fahr("fit", tmp_path / "x.py", "--config.max_cost=-1")
    assert "max_cost" in one_line_error(proc, 2)


def test_max_cost_on_a_driver_without_max_run_does_not_advise_setting_it(tmp_path):
    """`local` has no max_run: a price_per_hour given to it has no ceiling, and the refusal must
    not send the user to a key the driver refuses as unknown."""
    (tmp_path / "train.py").write_text("print('never')\n")
    proc = run_fahr("fit", tmp_path / "train.py", "--config.price_per_hour=2", "--config.max_cost=5",
                    env={"FAHR_LOCAL_OUTPUT_PATH": str(tmp_path / "jobs")})
    line = one_line_error(proc, 2)
    assert "max_cost is $5" in line and "driver 'local' has no longest run time" in line, line
    assert "set max_run" not in line
    assert not (tmp_path / "jobs").exists()


def test_a_jobs_cost_counts_the_seconds_its_warm_pool_was_billed():
    # SageMaker bills a warm pool's waiting seconds (ResourceRetainedBillableTimeInSeconds, per
    # instance) at the instances' price, beside the job's own: `fahr jobs --cost` must say both.
    from fahr_core import Price, WarmPool
    from fahr_core.api import Job

    job = Job("i19revsm-pooled")
    job.price = Price(per_hour=3.6, instances=2, source="test")
    job.billable_seconds = 100.0
    assert job.cost == pytest.approx(0.2)
    job.warm_pool = WarmPool(status="Terminated", billable_seconds=50.0)
    assert job.cost == pytest.approx(0.3)
    job.warm_pool = WarmPool(status="Available", billable_seconds=None)
    assert job.cost == pytest.approx(0.2)
