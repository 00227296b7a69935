"""
Realistic variants of a platform's answers: the same run, with field types and shapes that differ from
the documented examples in the small ways real platforms drift (numbers as text, fractional times, an
error given as an object, outputs as a JSON string...).

A scenario's ``variants`` names some of :data:`VARIANTS`; the emulator then applies them to every run
detail it serves, so a DAG can be tried against them. The property-based tests draw from the same
transforms. The fields a client needs to decide (run id, status word) are never touched.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Collection
from datetime import datetime, timedelta, timezone
from typing import Any

Transform = Callable[[str, Any, random.Random], Any]
_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_TIME_KEY = re.compile(r"(_at|Time|^at)$")
_MISSING = object()


def _numbers_as_strings(key: str, value: Any, rng: random.Random) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _ints_and_floats_swapped(key: str, value: Any, rng: random.Random) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _fractional_times(key: str, value: Any, rng: random.Random) -> Any:
    if not _TIME_KEY.search(key):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value + 0.5
    if isinstance(value, str) and (match := _ISO.match(value)):
        return f"{match.group(1)}.250{match.group(3)}"
    return value


def _offsets(key: str, value: Any, rng: random.Random) -> Any:
    """ISO times in UTC written as the same instant at +08:00 (China Standard Time)."""
    if isinstance(value, str) and (match := _ISO.match(value)) and match.group(3) == "Z":
        instant = datetime.fromisoformat(f"{match.group(1)}+00:00")
        return (instant.astimezone(timezone(timedelta(hours=8)))).isoformat()
    return value


def _errors_as_objects(key: str, value: Any, rng: random.Random) -> Any:
    if key in ("error", "message", "errorMessage") and isinstance(value, str) and value:
        return {"message": value, "code": "E_VARIANT"}
    return value


def _errors_as_text(key: str, value: Any, rng: random.Random) -> Any:
    if key == "error" and isinstance(value, dict) and value.get("reason"):
        return str(value["reason"])
    return value


def _outputs_as_json_text(key: str, value: Any, rng: random.Random) -> Any:
    if key in ("output", "outputs") and isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return value


def _ids_as_numbers(key: str, value: Any, rng: random.Random) -> Any:
    if (key.endswith(("_id", "Id", "Version")) or key == "node_id") and isinstance(value, str):
        digits = re.sub(r"\D", "", value)[:15]
        return int(digits) if digits else value
    return value


def _nulls(key: str, value: Any, rng: random.Random) -> Any:
    return None if rng.random() < 0.3 else value


def _missing(key: str, value: Any, rng: random.Random) -> Any:
    return _MISSING if rng.random() < 0.3 else value


def _huge_numbers(key: str, value: Any, rng: random.Random) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not _TIME_KEY.search(key):
        return rng.choice((1e300, -1.0, 10**40))
    return value


def _lists_for_objects(key: str, value: Any, rng: random.Random) -> Any:
    if key in ("error", "queue_info") and isinstance(value, dict):
        return [value]
    return value


#: Name -> transform of one field ``(key, value, rng) -> new value``; applied to every non-essential field.
VARIANTS: dict[str, Transform] = {
    "numbers_as_strings": _numbers_as_strings,
    "ints_and_floats_swapped": _ints_and_floats_swapped,
    "fractional_times": _fractional_times,
    "offsets": _offsets,
    "errors_as_objects": _errors_as_objects,
    "errors_as_text": _errors_as_text,
    "outputs_as_json_text": _outputs_as_json_text,
    "ids_as_numbers": _ids_as_numbers,
    "lists_for_objects": _lists_for_objects,
    "nulls": _nulls,
    "missing_fields": _missing,
    "huge_numbers": _huge_numbers,
}
#: Added by the ``extra_fields`` variant: fields no documentation mentions.
EXTRA_FIELDS = {"x_new_field": {"nested": [1, "two", None]}, "schema_version": 3}


def vary(
    payload: dict[str, Any], names: Collection[str], *, essential: Collection[str], seed: int = 0
) -> dict[str, Any]:
    """``payload`` with the named variants applied (``extra_fields`` adds unknown fields); a new dict."""
    rng = random.Random(seed)
    transforms = [VARIANTS[name] for name in VARIANTS if name in names]
    result = _vary_object(payload, transforms, rng, essential)
    if "extra_fields" in names:
        result.update(EXTRA_FIELDS)
    return result


#: Values the user's workflow produced or received: variants change how they are carried, not what they are.
_USER_DATA = frozenset({"output", "outputs", "input", "inputs"})


def _vary_object(
    payload: dict[str, Any], transforms: list[Transform], rng: random.Random, essential: Collection[str]
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in payload.items():
        if key in essential:
            result[key] = value
            continue
        if key not in _USER_DATA:
            value = _nested(value, transforms, rng)
        for transform in transforms:
            if value is not _MISSING:
                value = transform(key, value, rng)
        if value is not _MISSING:
            result[key] = value
    return result


def _nested(value: Any, transforms: list[Transform], rng: random.Random) -> Any:
    """Inside nested objects (logs, queue info, errors) the same variants apply."""
    if isinstance(value, dict):
        return _vary_object(value, transforms, rng, ())
    if isinstance(value, list):
        return [_nested(item, transforms, rng) for item in value]
    return value
