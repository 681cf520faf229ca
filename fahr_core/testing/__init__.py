"""The driver conformance suite: the contract every fahr driver keeps, as tests to subclass.

As fsspec's abstract test classes, the suite ships with the library and a driver's own tests
subclass it, providing fixtures::

    # tests/test_conformance.py of fahr-mydriver
    import pytest
    from fahr_core.testing import DriverConformance

    class TestConformance(DriverConformance):
        api_level = "1.4"  # the plugin API level the driver keeps (default "1.0")

        @pytest.fixture(scope="class")
        @classmethod
        def driver_name(cls):
            return "mydriver"

        @pytest.fixture(scope="class")
        @classmethod
        def driver_config(cls, tmp_path_factory):
            return {"output_path": str(tmp_path_factory.mktemp("jobs"))}

The suite trains one known model (a stdlib-only script whose behaviour a hyperparameter selects)
through the real ``fahr`` command, a subprocess of the test's Python environment, and reads some
results in-process through the driver's own hooks. Passing it means the driver keeps the contract:

``RunContract`` (:mod:`~fahr_core.testing.running`)
    the job completes; its logs reach fahr's stdout *while it runs* (a line the model prints,
    then waits ~8 s, must arrive seconds before fahr exits); hyperparameters arrive as strings,
    channel data intact, ``--env`` variables set, ``FAHR_EXECUTION_ENVIRONMENT`` and
    ``TRAINING_JOB_NAME`` set (``TRAINING_JOB_ARN`` the job's ARN or unset: 1.1), a channel
    given no content type has no ``ContentType`` (1.1), ``resourceconfig.json`` (current_host
    among hosts) and ``inputdataconfig.json`` (each channel with its TrainingInputMode) written;
    job names valid
    and unique; a failing model fails with its ``/opt/ml/output/failure``, cut to 1024 characters
    (a 3000-character reason comes back as its 1024-character prefix), and a crash without one
    still has a reason; the job's ``output.tar.gz`` exists and holds the model's output data; a
    ``--detach``ed job can be followed to its end with ``fahr wait JOB``, which knows its model tag.
``ModelContract`` (:mod:`~fahr_core.testing.model`)
    the model comes back byte for byte; a job that saved no file is reported (``model_empty``:
    1.1); a tree with a non-ASCII name, paths over 100 and 255 characters, hard link pairs,
    relative symlinks, an empty folder, an executable and a 0-byte file comes back exactly as
    the job's own manifest of it says.
``FetchContract`` (:mod:`~fahr_core.testing.fetching`)
    fetch by tag takes the newest *completed* job of *that* tag (not another tag's newer job, not
    a newer failed one); it refuses a non-empty target and never writes outside it; the driver
    claims no location that is not its own.
``StopContract`` (:mod:`~fahr_core.testing.stopping`)
    ``fahr stop`` ends a running job Stopped with SIGTERM and a grace period: the model's SIGTERM
    handler takes 2 s to save a marker, which must come back (in the logs or the output data).
``JobsContract`` (:mod:`~fahr_core.testing.listing`; optional hooks: skipped without them)
    ``list_jobs`` lists the suite's jobs of the model's tag newest first (by ``created``), each
    with its status (the failed one with its reason, the completed one with its artifact), and
    honours ``status`` and ``limit``; ``logs`` of a finished job holds the lines the model printed.
``CleanupContract`` (:mod:`~fahr_core.testing.cleanup`; runs last)
    no container, network or temporary file named after any job of the suite is left behind.

Fixtures a driver overrides (all class-scoped):

``driver_name`` (required)
    the driver's entry-point name.
``driver_config``
    ``{key: value}`` passed as ``--config.KEY=VALUE`` to every command (default: none).
``driver_env``
    extra environment for the ``fahr`` subprocesses and the in-process hook calls, e.g. the
    endpoints of an emulated cloud.
``execution_environment``
    the ``FAHR_EXECUTION_ENVIRONMENT`` the job must see (default: ``driver_name``).
``fetch_location``
    the ``ARTIFACT_LOCATION`` argument of ``fahr fetch`` (default: ``driver_config["output_path"]``
    when there is one, else none).
``channel_uri``
    a function turning a local folder into what ``--input CHANNEL=…`` takes on this driver
    (default: the folder's path; a cloud driver uploads it and returns its URI).
``supports_stop``
    whether the driver implements ``stop`` (default: True; False skips the stop test).
``leftovers``
    a function ``job_name -> list[str]`` naming what the job left behind (default: Docker
    containers and networks whose name or labels hold the job name, and files and folders
    named after it in the temporary folders of the test and of the ``fahr`` subprocesses). A
    driver on another backend adds its own resources (its cloud's instances, buckets' scratch…).
``read_artifact``
    a function ``location -> bytes`` reading an artifact a ``JobResult`` names (default: a local
    path or ``file://`` URI; a cloud driver downloads it).
``foreign_locations``
    artifact locations the driver must not claim (default: URIs of schemes nobody owns); extend
    it with locations of neighbouring drivers.
``job_timeout``
    seconds any one command may take (default: 600).

Fixtures no driver needs to touch: ``workspace`` (the models' folders), ``fahr`` (a
:class:`FahrRunner`), ``driver_session`` (the driver's plugin manager and resolved config, as
``fahr`` itself builds them, for in-process hook calls), and the shared jobs ``trained``,
``failed``, ``detached``, ``emptied``: each job costs seconds, so tests share them within the class.

A cloud driver tested against an emulated service (the ``sagemaker`` driver against the AWS
emulator) overrides ``driver_env`` with the emulator's endpoints and credentials,
``driver_config`` with its bucket and role, ``execution_environment`` with ``"sagemaker"``,
``channel_uri`` with an upload to the emulated S3 and ``read_artifact`` with a download from it.

API levels (:mod:`~fahr_core.testing.levels`): the suite was first published at plugin API level
1.0, and each rule added since is tagged with the level that introduced it (the numbers above;
``RULES`` lists them). A test class targets ``api_level`` (default ``"1.0"``); a rule of a higher
level that the driver breaks is a :class:`ConformanceWarning` naming the rule and the level that
makes it an error, and the test passes. Raise ``api_level`` to make those rules failures.

The package, by concern: ``harness`` (the ``fahr`` subprocesses), ``conformance_model`` (the
model, a real stdlib-only script), ``fixtures``, ``levels``, and one module per contract.
"""

# ruff: noqa: F401  (the names below are this package's surface: re-exported, not used here)
from fahr_core.testing.cleanup import CleanupContract, _docker_leftovers, _temp_leftovers
from fahr_core.testing.conformance_model import (ENV_NAME, SIGTERM_WORK_SECONDS, build_tree, long_failure_reason,
                                                 tree_manifest)
from fahr_core.testing.fetching import FetchContract
from fahr_core.testing.fixtures import (CONFORMANCE_MODEL, LINGER_SECONDS, MODEL_FOLDER, MODEL_TAG, OTHER_FOLDER,
                                        OTHER_TAG, DriverFixtures, _InProcess, _read_local, _sha256, _tar_members)
from fahr_core.testing.harness import _JOB_NAME_PATTERNS, FahrRunner, LiveRun, _job_name, _show, job_names
from fahr_core.testing.levels import FIRST_LEVEL, ConformanceWarning, Rule, since
from fahr_core.testing.listing import JobsContract
from fahr_core.testing.model import ModelContract
from fahr_core.testing.running import FAILURE_REASON_MAX, LIVE_MARGIN_SECONDS, RunContract
from fahr_core.testing.stopping import StopContract

__all__ = [
    "DriverConformance", "DriverFixtures", "RunContract", "ModelContract", "FetchContract", "StopContract",
    "CleanupContract", "JobsContract", "CONFORMANCE_MODEL", "FahrRunner", "build_tree", "tree_manifest",
    "long_failure_reason", "job_names", "ConformanceWarning", "Rule", "RULES", "FIRST_LEVEL",
]
# Every other name imported above stays importable from here, as before the suite was a package
# (the constants, LiveRun, and the private helpers some tests use).


class DriverConformance(CleanupContract, JobsContract, StopContract, FetchContract, ModelContract, RunContract,
                        DriverFixtures):
    """The contract every driver keeps. Subclass it in the driver's tests; see the module doc.

    pytest runs the mixins' tests from the last base to the first: CleanupContract, first here,
    runs last and so sees every job of the suite.
    """


#: Every rule added after :data:`FIRST_LEVEL`, by test name (the test that checks it), with its level.
RULES: dict[str, Rule] = {name: getattr(DriverConformance, name).rule for name in dir(DriverConformance)
                          if isinstance(getattr(getattr(DriverConformance, name), "rule", None), Rule)}
