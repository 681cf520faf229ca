"""Check the answers before anything is rendered (fahr init checks them too, with this function)."""
import json
import sys

from fahr_core.errors import UsageError
from fahr_core.scaffold import validate_answers

try:
    validate_answers(json.loads(r'''{{ cookiecutter | jsonify }}'''))
except UsageError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
