"""``ModelContract``: the model comes back exactly as the job left it."""

from __future__ import annotations

import hashlib
import json
import uuid

from fahr_core.testing.conformance_model import tree_manifest
from fahr_core.testing.fixtures import _sha256
from fahr_core.testing.harness import _job_name, _show
from fahr_core.testing.levels import since


class ModelContract:
    """The model comes back exactly as the job left it."""

    def test_the_model_comes_back_intact(self, trained):
        model = trained["model"]
        files = sorted(str(p.relative_to(model)) for p in model.rglob("*") if p.is_file())
        assert files == ["nested/deeper/weights.bin", "report.json"]
        weights = model / "nested" / "deeper" / "weights.bin"
        assert weights.stat().st_size == 1024 * 1024
        assert _sha256(weights) == trained["report"]["weights_sha256"]
        expected = hashlib.sha256(trained["token"].encode()).digest() * 32768
        assert weights.read_bytes() == expected

    @since("1.1", "a job that saved no file in /opt/ml/model is reported (JobResult.model_empty)")
    def test_a_model_with_no_file_is_reported(self, emptied, trained):
        # Every driver says when /opt/ml/model was empty (JobResult.model_empty): fahr warns.
        result = emptied["result"]
        assert "saved no model: /opt/ml/model was empty" in result.stderr, (
            "a job whose /opt/ml/model held no file was not reported (JobResult.model_empty)\n" + _show(result))
        assert "saved no model" not in trained["result"].stderr, (
            "a job that saved its model was reported empty (JobResult.model_empty)\n" + _show(trained["result"]))

    def test_links_long_and_non_ascii_names_survive(self, fahr, model_script, workspace, fetch_location):
        token = uuid.uuid4().hex
        result = fahr("fit", model_script, "--hp", "mode=tree", "--hp", f"token={token}")
        assert result.returncode == 0, _show(result)
        target = workspace / "fetched-tree"
        fetched = self.fetch(fahr, fetch_location, target, _job_name(result))
        assert fetched.returncode == 0, _show(fetched)
        expected = json.loads((target / "conformance-manifest.json").read_text())
        entries = expected["entries"]
        # The job's manifest describes the tree it was meant to (or nothing would be tested).
        assert "modèle-poids.json" in entries and max(map(len, entries)) > 255
        assert any(100 < len(name) <= 255 for name in entries)
        assert len(expected["hardlinks"]) == 2 and entries["zero.bin"]["size"] == 0
        found = tree_manifest(str(target), skip=("conformance-manifest.json",))
        missing = sorted(set(entries) - set(found["entries"]))
        assert not missing, f"lost in the round trip: {missing}"
        changed = {k: (entries[k], found["entries"].get(k)) for k in entries if entries[k] != found["entries"].get(k)}
        assert not changed, f"changed in the round trip: {changed}"
        assert found == expected
