"""Reading the project's YAML files (config, streams) the same way: UTF-8 or a one-line error, a mapping or a
one-line error, and pydantic's validation errors as one line naming the key as a user writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from perception.core.errors import PerceptionError


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping (an empty file: an empty one), or one line naming `what` is wrong."""
    if not path.is_file():
        raise PerceptionError(f"{what} not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise PerceptionError(f"{what} {path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PerceptionError(
            f"{what} {path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise PerceptionError(f"{what} {path}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise PerceptionError(f"{what} {path}: nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # PyYAML's own constructors, e.g. `0b_` read as a binary int
        raise PerceptionError(f"{what} {path}: invalid YAML value: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PerceptionError(f"{what} {path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def shown_key(key: object) -> str:
    """A key as the error line shows it: as written, unless that would break the line (then quoted)."""
    return key if isinstance(key, str) and key.isprintable() and key.strip() == key and key else repr(key)


def _key(loc: tuple[str | int, ...]) -> str:
    """A pydantic location as the YAML key a user types: `extra_detectors[0].model`."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f"{'.' if key else ''}{shown_key(part)}"
    return key


def validation_message(exc: ValidationError, what: str = "config") -> str:
    """The first problem pydantic found, as one line: the key as a user writes it, the message, the value."""
    errors = exc.errors()
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown:  # a misspelt key explains the missing one beside it: name it first
        return f"unknown {what} key: {_key(unknown[0]['loc'])}{more}"
    err = errors[0]
    key = _key(err["loc"])
    value = err.get("input")
    msg = err["msg"].removeprefix("Value error, ")
    shown = "" if isinstance(value, dict) or "got " in msg else f" (got {value!r})"
    return f"{key + ': ' if key else ''}{msg}{shown}{more}"
