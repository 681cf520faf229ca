"""The local driver's package as the architecture (docs: the package docstring): modules of one
job each, none over ~500 lines; its old import paths kept; the checkpoint policy out of the
container contract without an import cycle; fahr's write-then-rename from one primitive."""

from __future__ import annotations

import ast
import os
import stat
import subprocess
import sys
from pathlib import Path

import fahr_core
from fahr_core.jobfolder import Folder

PACKAGE = Path(fahr_core.__file__).parent / "drivers" / "local"


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "fahr_core":  # from fahr_core import jobs
                found.update(f"fahr_core.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_local_driver_is_a_package_of_modules_under_500_lines():
    modules = sorted(PACKAGE.glob("*.py"))
    assert {m.name for m in modules} >= {"__init__.py", "records.py", "lifecycle.py", "checkpoints.py",
                                         "checkpoint_folders.py", "logstream.py"}
    for module in modules:
        assert len(module.read_text().splitlines()) <= 500, module.name


def test_the_names_used_from_the_old_paths_still_import():
    from fahr_core import contract
    from fahr_core.drivers import local
    from fahr_core.drivers.local import checkpoints

    for name in ("NAME", "RECORD", "MAX_INSTANCE_COUNT", "FOLLOW", "CLEANUP", "BadRecord", "default_output_path",
                 "IN_USE", "GIVEN", "config_keys", "claims_location", "check_run", "launch", "wait", "stop",
                 "fetch", "list_jobs", "logs", "_user_of", "_release", "_tidy_staging", "_checkpoint_root", "_claim",
                 "_claimed", "_names", "_named", "_check_not_in_use", "_live_logs", "_LIVE_QUEUE", "_saved_logs"):
        assert hasattr(local, name), name
    for name in ("CHECKPOINT_MARKER", "MARKER_TEXT", "CopiedBack", "CheckpointMerge", "checkpoint_manifest"):
        assert getattr(contract, name) is getattr(checkpoints, name)
    assert contract.ContractRun.copy_out  # the SageMaker emulator of the tests merges checkpoints with it


def test_the_checkpoint_policy_imports_nothing_of_the_contract_or_the_driver():
    """contract.py re-exports the policy: were the policy to import the contract (or a module
    that does), the two would import each other."""
    inside = {i for i in imports(PACKAGE / "checkpoints.py") if i.startswith("fahr_core")}
    assert inside == {"fahr_core.errors", "fahr_core.extract", "fahr_core.hashing"}, inside


def test_importing_the_contract_loads_no_driver():
    code = "import sys, fahr_core.contract; print(sorted(m for m in sys.modules if m.startswith('fahr_core.drivers')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_local_driver_and_the_contract_import_values_not_jobs():
    for module in [*PACKAGE.glob("*.py"), PACKAGE.parent.parent / "contract.py"]:
        assert "fahr_core.jobs" not in imports(module), module


def test_a_file_written_over_a_while_is_renamed_whole_into_place(tmp_path):
    """Folder.partial/commit: replacing's halves, for a log copied as a job prints it."""
    with Folder.open(tmp_path / "logs", create=True) as folder:
        name = folder.partial("algo-1.log")
        assert name.startswith(".algo-1.log.") and name.endswith(".partial")
        assert stat.S_IMODE(os.lstat(tmp_path / "logs" / name).st_mode) == 0o600
        with open(tmp_path / "logs" / name, "ab") as handle:
            handle.write(b"line\n")
        assert not (tmp_path / "logs" / "algo-1.log").exists()
        folder.commit(name, "algo-1.log")
    assert sorted(os.listdir(tmp_path / "logs")) == ["algo-1.log"]
    assert (tmp_path / "logs" / "algo-1.log").read_bytes() == b"line\n"


def test_no_rename_into_place_in_the_contract_or_the_local_driver_but_the_folders():
    """The local driver and the contract write whole files only through fahr_core.jobfolder."""
    for module in [*PACKAGE.glob("*.py"), PACKAGE.parent.parent / "contract.py"]:
        text = module.read_text()
        assert "os.rename(" not in text, module
