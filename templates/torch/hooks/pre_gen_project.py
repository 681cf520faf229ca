"""Check the answers before anything is rendered (fahr init checks them too, with this function)."""
import json
import sys

from fahr_core.errors import UsageError
from fahr_core.scaffold import validate_answers

try:
    # The answers as a JSON text in a JSON (so Python) string literal: any answer fits in it.
    validate_answers(json.loads({{ cookiecutter | jsonify | tojson }}))
except UsageError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
