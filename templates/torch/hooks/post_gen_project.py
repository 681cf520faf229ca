"""Write the Dockerfile and .dockerignore: the very files `fahr fit` generates for a bare script
(fahr_core.image is their one source), for this project's training artifact."""
from pathlib import Path

from fahr_core.image import DOCKERIGNORE, dockerfile_text
from fahr_core.scaffold import remove_bytecode

artifact = {{ cookiecutter._fahr_artifact | tojson }}
Path("Dockerfile").write_text(dockerfile_text(artifact, {{ cookiecutter.base_image | tojson }}, has_requirements=True))
Path(".dockerignore").write_text(DOCKERIGNORE)
remove_bytecode(Path.cwd())  # pip byte-compiled the installed template's .py files
