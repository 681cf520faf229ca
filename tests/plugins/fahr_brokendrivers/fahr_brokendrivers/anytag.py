"""Defect: fetch without --job takes the newest job with a model, whatever its tag."""

import json
import shutil
from pathlib import Path

from fahr_brokendrivers import delegating_hooks, hookimpl, local

globals().update(delegating_hooks("broken-anytag"))


@hookimpl
def fetch(request, config):
    if request.job_name:
        return local.fetch(request, config)
    root = Path(request.location or config["output_path"]).expanduser()
    jobs = [p.parent.parent for p in root.glob("*/output/model.tar.gz")]
    if not jobs:
        return local.fetch(request, config)
    newest = max(jobs, key=lambda job: json.loads((job / "job.json").read_text()).get("created", 0))
    target = Path(request.download_dir) / "model.tar.gz"
    shutil.copyfile(newest / "output" / "model.tar.gz", target)
    return target
