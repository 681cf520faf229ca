"""What SageMaker training costs by the hour: the AWS Price List API (``pricing:GetProducts``),
answers cached for a week in fahr's cache folder (docs/sagemaker.md, "Costs").

``config.price_per_hour`` overrides it. Without either (no permission, no network, a type the
Price List does not list) the price is unknown: fahr says so and never guesses.

The cache file is read as untrusted input: anything but the shape written here is ignored and
written anew, atomically (a temporary file beside it, renamed over it), so that a crash or a
second fahr halfway through never leaves half a file.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
import time
from pathlib import Path

from fahr_core import Price, cache_folder

SERVICE_CODE = "AmazonSageMaker"
#: How long an answer of the Price List is used before it is asked again.
CACHE_SECONDS = 7 * 86400
#: The cache file's format; another one is ignored (and replaced).
CACHE_VERSION = 1
#: A bigger cache file is not read (a few hundred types fit in a few KiB).
CACHE_MAX_BYTES = 1024 * 1024
#: The regions whose endpoints answer the Price List API (it lists every region's prices,
#: told apart by ``regionCode``): any other region asks the nearest of its partition.
PRICING_REGIONS = ("us-east-1", "eu-central-1", "ap-south-1", "cn-northwest-1")
#: The unit of an hourly price dimension in the Price List.
_HOURS = {"hrs", "hr", "hours", "hour"}

#: Answers of this process (a listing asks once per type, not once per job).
_memo: dict[str, tuple[float | None, str]] = {}


def endpoint_region(region: str) -> str:
    """The region whose Price List endpoint answers for ``region``."""
    if region in PRICING_REGIONS:
        return region
    return "cn-northwest-1" if region.startswith("cn-") else "us-east-1"


def product_filters(instance_type: str, region: str) -> list[dict]:
    """GetProducts' filters for the on-demand training price of ``instance_type`` in ``region``."""
    return [{"Type": "TERM_MATCH", "Field": "instanceName", "Value": instance_type},
            {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
            {"Type": "TERM_MATCH", "Field": "platoinstancetype", "Value": "Training"}]


def hourly_from_price_list(entries) -> float | None:
    """The on-demand dollars per hour in GetProducts' ``PriceList`` (each entry a JSON string: its
    ``terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD``, unit ``Hrs``); None when the entries
    hold no such price, or several different ones (a choice would be a guess)."""
    found: set[float] = set()
    for entry in entries or ():
        try:
            product = json.loads(entry) if isinstance(entry, (str, bytes)) else entry
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            continue
        # Each level is checked to be an object: any other JSON value there is no price.
        attributes = _object(_object(product).get("product")).get("attributes")
        if "spot" in str(_object(attributes).get("usagetype", "")).lower():
            continue  # a spot usage line, not the on-demand price
        for term in _object(_object(_object(product).get("terms")).get("OnDemand")).values():
            for dimension in _object(_object(term).get("priceDimensions")).values():
                dimension = _object(dimension)
                if str(dimension.get("unit", "")).lower() not in _HOURS:
                    continue
                value = _object(dimension.get("pricePerUnit")).get("USD")
                if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                    continue  # the Price List writes a price as a string; true is no $1
                try:
                    usd = float(value)
                except ValueError:
                    continue
                if math.isfinite(usd) and usd > 0:
                    found.add(usd)
    return found.pop() if len(found) == 1 else None


def _object(value) -> dict:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


# -- the cache ------------------------------------------------------------------------------------


def cache_file() -> Path:
    """Where the prices are cached: ``<fahr's cache folder>/sagemaker/prices.json``."""
    return cache_folder() / "sagemaker" / "prices.json"


def _valid_entry(entry, now: float) -> bool:
    if not isinstance(entry, dict) or set(entry) != {"usd_per_hour", "at"}:
        return False
    usd, at = entry["usd_per_hour"], entry["at"]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (usd, at))
    return numbers and usd > 0 and 0 < at <= now + 60  # a time to come is no answer of the past


def read_cache(path: Path | None = None, now: float | None = None) -> dict[str, dict]:
    """The cached answers, ``"REGION TYPE" -> {"usd_per_hour", "at"}``; {} when there is no cache
    file, or one that is not what :func:`write_cache` writes (a link, too big, not JSON, another
    shape): it is then ignored, and the next answer replaces it."""
    path = path or cache_file()
    now = time.time() if now is None else now
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(CACHE_MAX_BYTES + 1)
    except OSError:
        return {}
    finally:
        os.close(fd)
    if len(data) > CACHE_MAX_BYTES:
        return {}
    try:
        content = json.loads(data)
    except ValueError:
        return {}
    if not isinstance(content, dict) or content.get("version") != CACHE_VERSION:
        return {}
    prices = content.get("prices")
    if not isinstance(prices, dict):
        return {}
    return {key: entry for key, entry in prices.items() if isinstance(key, str) and _valid_entry(entry, now)}


def write_cache(prices: dict[str, dict], path: Path | None = None) -> None:
    """Write the cache whole, atomically; a cache that cannot be written is no error (the price
    is asked again next time)."""
    path = path or cache_file()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.parent.is_symlink() or not path.parent.is_dir():
            return  # not fahr's own folder: neither read through nor written
        fd, partial = tempfile.mkstemp(prefix=".prices.", suffix=".partial", dir=path.parent)
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as stream:
            json.dump({"version": CACHE_VERSION, "prices": prices}, stream, indent=1, sort_keys=True)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, path)
    except OSError:
        try:
            os.unlink(partial)
        except OSError:
            pass


def cached(key: str, now: float | None = None) -> float | None:
    """The cached price of ``key`` when it is less than a week old."""
    now = time.time() if now is None else now
    entry = read_cache(now=now).get(key)
    if entry is None or now - entry["at"] > CACHE_SECONDS:
        return None
    return float(entry["usd_per_hour"])


def remember(key: str, usd_per_hour: float, now: float | None = None) -> None:
    """Add an answer to the cache (the valid entries there kept; expired ones dropped)."""
    now = time.time() if now is None else now
    prices = {k: v for k, v in read_cache(now=now).items() if now - v["at"] <= CACHE_SECONDS}
    prices[key] = {"usd_per_hour": usd_per_hour, "at": now}
    write_cache(prices)


# -- the Price List -------------------------------------------------------------------------------


def ask(config, region: str, instance_type: str) -> float | None:
    """GetProducts for the training price of ``instance_type`` in ``region`` (raises botocore's
    errors)."""
    from botocore.config import Config as BotoConfig

    from fahr_sagemaker import aws

    # Short timeouts and few retries: a price is worth a line, not a minute of waiting.
    client = aws.session(config).client(
        "pricing", region_name=endpoint_region(region),
        config=BotoConfig(connect_timeout=5, read_timeout=15, retries={"mode": "standard", "max_attempts": 3},
                          user_agent_extra="fahr-sagemaker"))
    request = {"ServiceCode": SERVICE_CODE, "Filters": product_filters(instance_type, region),
               "FormatVersion": "aws_v1", "MaxResults": 100}
    entries: list = []
    for _ in range(5):  # a handful of products match one type in one region
        page = client.get_products(**request)
        entries += page.get("PriceList") or []
        if not page.get("NextToken"):
            break
        request["NextToken"] = page["NextToken"]
    return hourly_from_price_list(entries)


def hourly(config, instance_type: str) -> tuple[float | None, str]:
    """Dollars per instance-hour of ``instance_type`` and where that came from (or, None, why it
    is not known): ``config.price_per_hour``, else the cache, else the Price List."""
    override = config.get("price_per_hour") or 0.0  # fahr's own key: it overrides any driver's price
    if override:
        return float(override), "config.price_per_hour"
    from fahr_sagemaker import aws

    region = aws.region_of(config)
    key = f"{region} {instance_type}"
    if key in _memo:
        return _memo[key]
    usd = cached(key)
    if usd is not None:
        answer: tuple[float | None, str] = (usd, "AWS Price List, cached")
    else:
        answer = _asked(config, region, instance_type, key)
    _memo[key] = answer
    return answer


def _asked(config, region: str, instance_type: str, key: str) -> tuple[float | None, str]:
    from botocore import exceptions as bex

    from fahr_sagemaker import aws

    try:
        usd = ask(config, region, instance_type)
    except bex.ClientError as exc:
        code = aws.error_code(exc)
        if code in ("AccessDenied", "AccessDeniedException"):
            return None, "pricing:GetProducts is not allowed to these credentials"
        return None, f"the AWS Price List refused ({code}: {aws.error_message(exc)})"
    except (bex.BotoCoreError, OSError) as exc:
        return None, f"the AWS Price List did not answer ({type(exc).__name__})"
    if usd is None:
        return None, f"the AWS Price List has no single on-demand training price of {instance_type} in {region}"
    remember(key, usd)
    return usd, "AWS Price List"


def price(config, instance_types, instances: int, max_seconds: float | None, spot: bool) -> Price:
    """The :class:`fahr_core.Price` of ``instances`` of the dearest of ``instance_types`` (a
    retried fit may fall back to any of them); unknown when one of them is."""
    answers = [(kind, *hourly(config, kind)) for kind in instance_types]
    unknown = next((a for a in answers if a[1] is None), None)
    kind, usd, source = unknown or max(answers, key=lambda a: a[1])
    return Price(per_hour=usd, instances=instances, max_seconds=max_seconds, spot=spot, source=source,
                 resources=f"{instances} × {kind}")


def of_job(config, record: dict) -> Price:
    """The price of a job as DescribeTrainingJob or Search reports it (its own type and count)."""
    resources = record.get("ResourceConfig") or {}
    kind = resources.get("InstanceType") or ""
    count = int(resources.get("InstanceCount") or 1)
    spot = bool(record.get("EnableManagedSpotTraining"))
    limit = (record.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    if not kind:  # a heterogeneous cluster (InstanceGroups) is not priced here
        return Price(per_hour=None, instances=count, spot=spot, source="the job names no single instance type")
    return price(config, [kind], count, limit, spot)
