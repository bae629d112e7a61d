"""Reading the JSON files latency_models keeps (devices, tables, predictors) with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path

from search_spaces.errors import UserInputError


def read_json(path, what: str, hint: str = ""):
    """The parsed contents of `path`; a missing or malformed file is a UserInputError naming `what` and the path."""
    path = Path(path)
    try:
        return json.loads(path.read_text(), object_pairs_hook=_unique_keys)
    except FileNotFoundError:
        raise UserInputError(f"{what} {path} does not exist{hint}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserInputError(f"{what} {path} is not valid JSON: {e}") from None
    except _RepeatedKey as e:
        raise UserInputError(f"{what} {path}: key {e.args[0]!r} is given twice in one object; give each once") \
            from None


class _RepeatedKey(ValueError):
    pass


def _unique_keys(pairs: list) -> dict:
    """A JSON object that names each key once (plain json keeps the last of repeated keys silently)."""
    result = {}
    for key, value in pairs:
        if key in result:
            raise _RepeatedKey(key)
        result[key] = value
    return result
