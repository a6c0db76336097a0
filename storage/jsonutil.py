"""Parameter JSON: the one place that decides how parameters are written to and read from a session.

Rules (documented in docs/storage.md):

* Keys must be strings (JSON would silently turn ``{1: x}`` into ``{"1": x}``).
* Values: None, bool, int of any size, finite float, str, list/tuple (read back as list), dict.
* NaN and +/-Infinity are refused with :class:`InvalidParamsError`: they are not JSON, other tools
  (A1111-style readers, web viewers) cannot read them, and a parameter that is NaN cannot be
  reproduced meaningfully.  Pass ``None`` or a string instead.
* Strings round-trip exactly, including lone surrogates (then the JSON is written ASCII-escaped).
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import InvalidParamsError

_SEED_MIN = -(2**63)
_SEED_MAX = 2**63 - 1


def _check(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidParamsError(
                f"Parameter {where} is {value!r}; NaN and infinite numbers cannot be saved in a "
                "session (they are not valid JSON). Use None or a finite number."
            )
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidParamsError(
                    f"Parameter {where} has a key {key!r} of type {type(key).__name__}; "
                    "parameter names must be strings."
                )
            _check(item, f"{where}.{key}" if where else key)
        return
    raise InvalidParamsError(
        f"Parameter {where or '(top level)'} has a value of type {type(value).__name__}, which "
        "cannot be saved as JSON; convert it to a number, string, list or dict first."
    )


def dumps_params(params: Any) -> str:
    """Serialise ``params`` (a dict) to JSON text, refusing what would not round-trip."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidParamsError(
            f"Parameters must be a dict of name -> value, not {type(params).__name__}."
        )
    _check(params, "")
    text = json.dumps(params, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: keep them by escaping
        text = json.dumps(params, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text


def loads_params(text: str | None) -> dict:
    """The parameters dict of ``text``; ``ValueError`` (with where) for text that is not a JSON
    object (a damaged row: the caller lists it as damaged)."""
    if not text:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, found {type(value).__name__}")
    return value


def safe_text(value: Any) -> Any:
    """``value`` unchanged unless it is a string that is not valid UTF-8 (lone surrogates, such as
    the ``\\udcff`` Python makes of a non-UTF-8 byte in a file name or argument): those are
    written as ``\\udcff`` escapes, so every text column holds valid UTF-8 that any reader can
    decode."""
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def dumps_any(value: Any, what: str = "metadata") -> str | None:
    """Like :func:`dumps_params` for metadata dicts / shapes; ``None`` stays ``None``."""
    if value is None:
        return None
    _check(value, what)
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text


def loads_any(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidParamsError(f"The seed must be a whole number or None, not {seed!r}.")
    if not _SEED_MIN <= seed <= _SEED_MAX:
        raise InvalidParamsError(
            f"The seed {seed} is outside the range a session can store "
            f"({_SEED_MIN} .. {_SEED_MAX}); use a smaller seed."
        )
    return seed


def search_texts(params: dict) -> tuple[str, str]:
    """(prompt text, other parameter text) for the full-text index.

    Every string value whose key contains ``prompt`` goes into the first column (so a search for
    words in a prompt finds it); every other string value, and the parameter names, into the second.
    """
    prompts: list[str] = []
    other: list[str] = []

    def walk(value: Any, key: str) -> None:
        if isinstance(value, str):
            (prompts if "prompt" in key.lower() else other).append(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                other.append(k)
                walk(v, k)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, key)

    walk(params, "")
    return _clean("\n".join(prompts)), _clean("\n".join(other))


def _clean(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")
