"""Leave no bytecode from the installed template (pip byte-compiles its .py files)."""
from pathlib import Path

from fahr_core.scaffold import remove_bytecode

remove_bytecode(Path.cwd())
