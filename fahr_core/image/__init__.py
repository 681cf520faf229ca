"""The training image: from the artifact ``fahr fit`` is given to a built image, one module a step.

- :mod:`~fahr_core.image.artifact`: what is trained (a script, a notebook, or a container of the
  user's own: :func:`check_artifact`, :func:`is_container`) and its :class:`BuildContext`
  (:func:`prepare_context`, which writes the generated Dockerfile when the folder has none).
- :mod:`~fahr_core.image.dockerfile`: the Dockerfile fahr writes for a script (its text, its
  :data:`GENERATED_MARK`, the :data:`DOCKERIGNORE`), and reading a project's as the engine does.
- :mod:`~fahr_core.image.context`: the build context: the files sent (.dockerignore, then fahr's
  secret rule, :mod:`fahr_core.secrets`), as a tar fahr makes itself; the big-context warning.
- :mod:`~fahr_core.image.cache`: each file's hash and secret-scan verdict, remembered between runs
  by its stat (:class:`ContextHashes`), so an unchanged data folder costs a walk of ``lstat`` calls.
- :mod:`~fahr_core.image.fingerprints`: what an image is built from, as one hash (:func:`fingerprint`).
- :mod:`~fahr_core.image.builder`: the core's build on the user's engine (:func:`build`), skipped when
  the image's fingerprint label says nothing changed, unless ``BuildContext.rebuild``.

Every public name of these modules is importable from here (``from fahr_core.image import X``).
Nothing here imports the Docker SDK before a build or a walk of the context needs it.
"""

from pathlib import Path  # noqa: F401  (importable from here, as from the module this package was)

from fahr_core.errors import BuildError, EnvironmentProblem, FahrError, UsageError  # noqa: F401
from fahr_core.image.artifact import (DOCKERFILE, SUPPORTED_SUFFIXES, check_artifact, is_container,
                                      prepare_context, regenerate_refused)
from fahr_core.image.builder import MODEL_TAG_LABEL, VERSION_LABEL, build
from fahr_core.image.cache import ContextHashes, fahr_cache_dir, hash_cache_file
from fahr_core.image.context import (CONTEXT_WARN_ENV, DEFAULT_CONTEXT_WARN_BYTES, ContextFiles, content_rule,
                                     context_files, context_size_warning, context_tar, context_warn_bytes,
                                     stat_context, warn_kept_out)
from fahr_core.image.dockerfile import (DEFAULT_EXECUTION_ENVIRONMENT, DOCKERIGNORE, GENERATED_MARK, LAUNCHER_IN_CONTEXT,
                                        LAUNCHER_PATH, NOTEBOOK_REQUIREMENTS, dockerfile_text, entrypoint_program,
                                        fahr_files, generated_for)
from fahr_core.image.fingerprints import FINGERPRINT_LABEL, context_entries, dockerfile_images, fingerprint
# The base-image check lives in fahr_core.names (config and `fahr init` use it too).
from fahr_core.names import check_base_image, image_reference_problem
# The secret rule lives in fahr_core.secrets; is_secret and secret_component stay importable from here.
from fahr_core.secrets import (ALLOW_FILE, HEAD_BYTES, SCANNER, ContentRule, is_secret, parse_allowed, scan,
                               secret_component)
from fahr_core.values import BuildContext, ImageRef

__all__ = [
    "ALLOW_FILE", "CONTEXT_WARN_ENV", "DEFAULT_CONTEXT_WARN_BYTES", "DEFAULT_EXECUTION_ENVIRONMENT", "DOCKERFILE",
    "DOCKERIGNORE", "FINGERPRINT_LABEL", "GENERATED_MARK", "HEAD_BYTES", "LAUNCHER_IN_CONTEXT", "LAUNCHER_PATH", "MODEL_TAG_LABEL", "NOTEBOOK_REQUIREMENTS",
    "SCANNER", "SUPPORTED_SUFFIXES", "VERSION_LABEL", "BuildContext", "ContentRule", "ContextFiles",
    "ContextHashes", "ImageRef", "build", "check_artifact", "check_base_image", "content_rule", "context_entries",
    "context_files", "context_size_warning", "context_tar", "context_warn_bytes", "dockerfile_images",
    "dockerfile_text", "entrypoint_program", "fahr_cache_dir", "fahr_files", "fingerprint", "generated_for", "hash_cache_file",
    "image_reference_problem", "is_container", "is_secret", "parse_allowed", "prepare_context",
    "regenerate_refused", "scan", "secret_component", "stat_context", "warn_kept_out",
]
