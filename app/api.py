"""The public plugin API of Implicit Studio: the only module a plugin needs to import.

Everything defined here is a promise to plugin authors and is versioned by :data:`API_VERSION`
(``MAJOR.MINOR``). Additions raise the minor number; any removal or incompatible change raises the
major number, and a plugin that asks for a newer API than the running app provides is refused with
a clear message instead of failing half-way.

A plugin is a module found through the ``implicit_studio.plugins`` entry-point group. It defines
hook implementations (functions decorated with :data:`hookimpl`) that return frozen *records*:
:class:`ToolSpec`, :class:`ReaderSpec`, :class:`WriterSpec`, :class:`ViewerSpec`,
:class:`SettingsSpec`, :class:`RewardSpec`, :class:`CommandSpec`. Records refer to code with
``"module:attribute"`` strings that are imported only when first used, so registering a plugin
costs almost nothing and never imports torch, diffusers, transformers or onnxruntime.

Minimal plugin module::

    from app.api import hookimpl, ToolSpec, IntParam, SeedParam

    REQUIRES_API = "1.2"          # optional: the API version this plugin was written for

    @hookimpl
    def studio_tools():
        return [ToolSpec(
            id="noise-image",
            title="Noise image",
            params=(IntParam(name="size", default=64, min=8, max=1024), SeedParam(name="seed")),
            run="my_plugin.compute:make_noise",
            results=("image",),
        )]

and its run function (in a module that may import heavy libraries)::

    from app.api import ImageResult

    def make_noise(ctx, size, seed):
        rng = ctx.numpy_rng()
        for i in range(10):
            ctx.progress(i, 10)            # also where a cancel request takes effect
        return ImageResult(image=rng.integers(0, 256, (size, size, 3), dtype="uint8"))

A tool may run other tools: ``ctx.run_tool("text-to-image", prompt="a fox", seed=3, steps=20)``
returns their results and records each call as a child run (API 1.2). ``docs/plugins.md`` is the
guide; its examples run in the test suite.

This module imports only the standard library and pluggy; numpy and PIL are imported inside the
functions that need them, and the studio's own services behind the run context (``app.paths``,
``app.settings``, ``app.fingerprint``: folders and fingerprints) when a context first asks.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Optional, Sequence

import pluggy

__all__ = [
    "API_VERSION",
    "PROJECT_NAME",
    "hookimpl",
    # errors
    "ParamError",
    "Cancelled",
    "ToolError",
    "IncompatibleAPIError",
    # parameters
    "Param",
    "IntParam",
    "FloatParam",
    "ChoiceParam",
    "BoolParam",
    "TextParam",
    "SeedParam",
    "IntListParam",
    "FloatListParam",
    "SeedListParam",
    "ImageParam",
    "MaskParam",
    "PathParam",
    "ModelParam",
    # records
    "ToolSpec",
    "ReaderSpec",
    "WriterSpec",
    "ViewerSpec",
    "SettingsSpec",
    "RewardSpec",
    "CommandSpec",
    "SessionEvent",
    # results
    "Result",
    "ImageResult",
    "MaskResult",
    "MeshResult",
    "ScalarFieldResult",
    "DistributionSeries",
    "TableResult",
    "FileResult",
    "RESULT_KINDS",
    "RESULT_REF_PREFIX",
    "SEED_MAX",
    "TOOL_GROUPS",
    "SESSION_EVENT_KINDS",
    # run context
    "RunContext",
    # helpers
    "model_fingerprint",
    "load_ref",
    "check_api_version",
    "api_compatible",
    "is_kebab_case",
    "is_empty_value",
]

#: Version of this API, ``"MAJOR.MINOR"``. A plugin written for ``X.Y`` works with any app whose
#: API has the same major ``X`` and a minor of at least ``Y``.
API_VERSION = "1.2"

#: The pluggy project name; hook implementations must use :data:`hookimpl`.
PROJECT_NAME = "implicit_studio"

#: Decorator marking a plugin's hook implementations, e.g. ``@hookimpl def studio_tools(): ...``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

_KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_SNAKE = re.compile(r"^[a-z_][a-z0-9_]*$")
_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

#: The result kinds the studio knows how to store and show.
RESULT_KINDS = ("image", "mask", "mesh", "field", "distribution", "table", "file")

#: Prefix of a parameter value that points at a result stored in the open session.
RESULT_REF_PREFIX = "result:"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ParamError(ValueError):
    """A parameter value was rejected. ``str(error)`` is the human message shown both next to the
    form field and by the command line (which prefixes the ``--option``)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


class Cancelled(Exception):
    """Raised inside a run (by :meth:`RunContext.progress` or :meth:`RunContext.check_cancelled`)
    when the user cancelled it. Let it propagate; the runner records the run as cancelled.

    To keep what a run made before it was cancelled, catch it and raise it again with those
    results: ``raise Cancelled(results=done) from None`` (a :class:`Result` or a list of them).
    The run is then recorded as cancelled *with* those results, which the gallery shows. A
    :meth:`RunContext.run_tool` call that is cancelled raises it with the results the other tool
    kept. ``results`` added in API 1.2."""

    def __init__(self, *args: Any, results: Any = None):
        super().__init__(*args)
        if results is None:
            results = []
        elif isinstance(results, Result):
            results = [results]
        elif isinstance(results, (list, tuple)):
            results = list(results)
        else:
            raise TypeError(f"Cancelled(results=...) takes a Result or a list of them, got {type(results).__name__}")
        #: What the run made before it was cancelled (kept with the cancelled run).
        self.results: list[Result] = results


class ToolError(RuntimeError):
    """Raise this from a run function for a failure the user can act on (missing model file, an
    input of the wrong size...). Its message is shown as is, without a traceback."""


class IncompatibleAPIError(RuntimeError):
    """A plugin or record asks for an API version this app does not provide."""


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def is_kebab_case(text: str) -> bool:
    """True for stable ids such as ``"text-to-image"``: lower-case words joined by single dashes."""
    return bool(_KEBAB.match(text or ""))


def _parse_version(text: str) -> tuple[int, int]:
    parts = str(text).strip().split(".")
    try:
        major = int(parts[0])
        minor = int(parts[1]) if len(parts) > 1 else 0
    except (ValueError, IndexError):
        raise IncompatibleAPIError(
            f"API version {text!r} is not of the form MAJOR.MINOR (for example '1.0')"
        ) from None
    return major, minor


def api_compatible(required: str) -> bool:
    """True if something written for API ``required`` (``"MAJOR.MINOR"``) runs on this app."""
    want = _parse_version(required)
    have = _parse_version(API_VERSION)
    return want[0] == have[0] and want[1] <= have[1]


def check_api_version(required: str, what: str = "plugin", dist: Optional[str] = None,
                      version: Optional[str] = None) -> None:
    """Raise :class:`IncompatibleAPIError` with a human sentence unless ``required`` is compatible.
    ``dist`` (and its installed ``version``) name the distribution to install another version
    of, with the ``pip`` command that does it (API 1.2)."""
    want = _parse_version(required)
    have = _parse_version(API_VERSION)
    if want[0] > have[0] or (want[0] == have[0] and want[1] > have[1]):
        other = (f"the distribution {dist} (pip install \"{dist}<{version}\")" if dist and version
                 else f"the distribution {dist}" if dist else f"the {what}")
        raise IncompatibleAPIError(
            f"{what} needs Implicit Studio plugin API {required}, but this app provides "
            f"{API_VERSION}; update Implicit Studio or install an older version of {other}"
        )
    if want[0] < have[0]:
        other = f"the distribution {dist} (pip install -U {dist})" if dist else f"the {what}"
        raise IncompatibleAPIError(
            f"{what} was written for Implicit Studio plugin API {required}, which this app "
            f"(API {API_VERSION}) no longer supports; install a newer version of {other}"
        )


def load_ref(ref: str) -> Any:
    """Import and return the object named by a ``"package.module:attribute"`` reference.

    Records keep code as such strings so that nothing is imported until a tool is run, a panel is
    opened or a file is read. Raises ``ImportError`` / ``AttributeError`` with the reference named.
    """
    if not isinstance(ref, str) or not _REF.match(ref):
        raise ValueError(f"code reference {ref!r} must look like 'package.module:attribute'")
    module_name, _, attr_path = ref.partition(":")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"{ref}: module {module_name!r} has no attribute {attr_path!r}") from None
    return obj


def _check_ref(ref: Optional[str], what: str, optional: bool = False) -> None:
    if ref is None and optional:
        return
    if not isinstance(ref, str) or not _REF.match(ref):
        raise ValueError(f"{what} must be a 'package.module:attribute' string, got {ref!r}")


def _label_from_name(name: str) -> str:
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Param:
    """Base of every typed parameter declaration.

    ``name`` is a snake_case Python identifier: the keyword the run function receives and, as
    ``--kebab-case``, the command-line option. ``label`` (shown in the form) defaults to the name
    in words; ``help`` is the tooltip and ``--help`` text; ``default`` is the initial value.
    ``advanced`` parameters are folded away in the form. ``required`` (API 1.2): an empty value
    (nothing, blank text, an empty list) is refused with the parameter's name, in the form and on
    the command line, so a required parameter needs no made-up default (leave it empty).

    Subclasses implement :meth:`validate` (value -> normalised value, or :class:`ParamError`) and
    :meth:`parse` (command-line text -> validated value); both use the same messages. A plugin
    may declare its own parameter type this way (see "Custom parameter types" in
    ``docs/plugins.md``): the form shows it as a line of text (:meth:`format` of the value) and
    hands the text to :meth:`validate`, the command line hands it to :meth:`parse`, and the
    session records :meth:`to_json` of the value.
    """

    type_name: ClassVar[str] = "value"

    name: str
    label: str = ""
    help: str = ""
    default: Any = None
    advanced: bool = False
    required: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _SNAKE.match(self.name):
            raise ValueError(f"parameter name {self.name!r} must be snake_case, e.g. 'num_steps'")
        if not self.label:
            object.__setattr__(self, "label", _label_from_name(self.name))
        if not isinstance(self.required, bool):
            raise ValueError(f"parameter {self.name!r}: required must be True or False, got {self.required!r}")

    # -- shared behaviour --------------------------------------------------------------------
    @property
    def cli_option(self) -> str:
        """The command-line option, e.g. ``--num-steps`` for ``num_steps``."""
        return "--" + self.name.replace("_", "-")

    def error(self, message: str) -> ParamError:
        """A :class:`ParamError` for this parameter (message starts with the label)."""
        return ParamError(f"{self.label}: {message}", self.name)

    def validate(self, value: Any) -> Any:
        """Return the normalised value or raise :class:`ParamError`."""
        return value

    def parse(self, text: str) -> Any:
        """Convert command-line text to a value and validate it."""
        return self.validate(text)

    def check(self, value: Any) -> Any:
        """:meth:`validate` with the ``required`` rule first: the one check the form, the command
        line and the runner apply to a value (through :meth:`ToolSpec.validate`). Added in API
        1.2."""
        if self.required and is_empty_value(value):
            raise self.error("a value is required")
        return self.validate(value)

    def format(self, value: Any) -> str:
        """The value as the text a person types (the form's line edit for a parameter type it
        does not know, ``--help`` defaults); :meth:`parse` reads it back. Added in API 1.2."""
        if value is None:
            return ""
        return _fmt(value)

    def describe(self) -> str:
        """One short line: type, range or choices, default (used by ``implicit-studio tools``)."""
        return f"{self.type_name} ({self._default_text()})"

    def _default_text(self, shown: Optional[str] = None) -> str:
        """``default X``, ``required`` (no default) or ``required; default X``."""
        if self.required and is_empty_value(self.default):
            return "required"
        if shown is None:
            shown = self.format(self.default) or repr(self.default)
        return ("required; " if self.required else "") + f"default {shown}"

    def to_json(self, value: Any) -> Any:
        """A JSON-safe form of a validated value, as recorded in the session."""
        return value


def is_empty_value(value: Any) -> bool:
    """True for what a ``required`` parameter refuses: ``None``, blank text, an empty list or
    tuple. Added in API 1.2."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return len(value) == 0
    return False


@dataclass(frozen=True, kw_only=True)
class IntParam(Param):
    """An integer in ``[min, max]`` (either bound may be ``None``), shown as a spin box/slider."""

    type_name: ClassVar[str] = "int"
    default: int = 0
    min: Optional[int] = None
    max: Optional[int] = None
    step: int = 1

    def validate(self, value: Any) -> int:
        if isinstance(value, bool) or value is None:
            raise self.error(f"expected a whole number, got {value!r}")
        if isinstance(value, str):
            return self.parse(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise self.error(f"expected a whole number, got {_fmt(value)}")
            value = int(value)
        if not isinstance(value, int):
            try:
                import operator

                value = operator.index(value)  # numpy integers
            except TypeError:
                raise self.error(f"expected a whole number, got {value!r}") from None
        _check_range(self, value)
        return int(value)

    def parse(self, text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise self.error(f"expected a whole number, got {text!r}") from None
        return self.validate(value)

    def describe(self) -> str:
        return f"int{_range_text(self)} ({self._default_text()})"


@dataclass(frozen=True, kw_only=True)
class FloatParam(Param):
    """A real number in ``[min, max]`` (either bound may be ``None``); ``step`` guides the widget."""

    type_name: ClassVar[str] = "float"
    default: float = 0.0
    min: Optional[float] = None
    max: Optional[float] = None
    step: float = 0.1
    decimals: int = 3

    def validate(self, value: Any) -> float:
        if isinstance(value, bool) or value is None:
            raise self.error(f"expected a number, got {value!r}")
        if isinstance(value, str):
            return self.parse(value)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise self.error(f"expected a number, got {value!r}") from None
        if not math.isfinite(value):
            raise self.error(f"expected a finite number, got {_fmt(value)}")
        _check_range(self, value)
        return value

    def parse(self, text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            raise self.error(f"expected a number, got {text!r}") from None
        return self.validate(value)

    def describe(self) -> str:
        return f"float{_range_text(self)} ({self._default_text()})"


def _check_range(param: Any, value: float) -> None:
    lo, hi = param.min, param.max
    if lo is not None and hi is not None and not (lo <= value <= hi):
        raise param.error(f"must be between {_fmt(lo)} and {_fmt(hi)}, got {_fmt(value)}")
    if lo is not None and value < lo:
        raise param.error(f"must be at least {_fmt(lo)}, got {_fmt(value)}")
    if hi is not None and value > hi:
        raise param.error(f"must be at most {_fmt(hi)}, got {_fmt(value)}")


def _range_text(param: Any) -> str:
    if param.min is None and param.max is None:
        return ""
    lo = "-inf" if param.min is None else _fmt(param.min)
    hi = "inf" if param.max is None else _fmt(param.max)
    return f" in [{lo}, {hi}]"


@dataclass(frozen=True, kw_only=True)
class ChoiceParam(Param):
    """One of a fixed set of strings. ``labels`` (same length as ``choices``) are shown in the
    form instead of the raw values; the CLI takes the values."""

    type_name: ClassVar[str] = "choice"
    choices: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    default: Optional[str] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "choices", tuple(str(c) for c in self.choices))
        object.__setattr__(self, "labels", tuple(self.labels))
        if not self.choices:
            raise ValueError(f"choice parameter {self.name!r} needs at least one choice")
        if self.labels and len(self.labels) != len(self.choices):
            raise ValueError(f"choice parameter {self.name!r}: labels and choices differ in length")
        if self.default is None:
            object.__setattr__(self, "default", self.choices[0])
        elif self.default not in self.choices:
            raise ValueError(f"choice parameter {self.name!r}: default {self.default!r} is not a choice")

    def validate(self, value: Any) -> str:
        text = str(value) if value is not None else ""
        if text not in self.choices:
            raise self.error(f"must be one of {', '.join(self.choices)}; got {value!r}")
        return text

    def parse(self, text: str) -> str:
        return self.validate(str(text).strip())

    def describe(self) -> str:
        return f"one of {{{', '.join(self.choices)}}} ({self._default_text()})"


_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


@dataclass(frozen=True, kw_only=True)
class BoolParam(Param):
    """A yes/no switch: a check box in the form, ``--name/--no-name`` on the command line."""

    type_name: ClassVar[str] = "bool"
    default: bool = False

    def validate(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            return self.parse(value)
        raise self.error(f"expected true or false, got {value!r}")

    def parse(self, text: str) -> bool:
        low = str(text).strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise self.error(f"expected true or false, got {text!r}")


@dataclass(frozen=True, kw_only=True)
class TextParam(Param):
    """Text: a line edit, or a multi-line box when ``multiline`` (prompts). ``max_length`` of
    ``None`` means unlimited; ``allow_empty=False`` rejects blank text."""

    type_name: ClassVar[str] = "text"
    default: str = ""
    multiline: bool = False
    max_length: Optional[int] = None
    allow_empty: bool = True
    placeholder: str = ""

    def validate(self, value: Any) -> str:
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise self.error(f"expected text, got {type(value).__name__}")
        if not self.allow_empty and not value.strip():
            raise self.error("must not be empty")
        if self.max_length is not None and len(value) > self.max_length:
            raise self.error(f"must be at most {self.max_length} characters, got {len(value)}")
        return value

    def parse(self, text: str) -> str:
        return self.validate(text)

    def describe(self) -> str:
        return f"text ({self._default_text(repr(self.default))})"


#: Seeds are drawn from and checked against ``[0, SEED_MAX]``.
SEED_MAX = 2**32 - 1


@dataclass(frozen=True, kw_only=True)
class SeedParam(Param):
    """A random seed. ``-1`` (the default) or ``None`` means "pick one at random"; the runner then
    draws a seed, passes that concrete number to the run function and records it, so every run
    can be repeated exactly."""

    type_name: ClassVar[str] = "seed"
    default: int = -1

    def validate(self, value: Any) -> int:
        if value is None:
            return -1
        if isinstance(value, bool):
            raise self.error(f"expected a whole number or -1 for random, got {value!r}")
        if isinstance(value, str):
            return self.parse(value)
        try:
            import operator

            value = operator.index(value)
        except TypeError:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise self.error(f"expected a whole number or -1 for random, got {value!r}") from None
        if value == -1:
            return -1
        if not (0 <= value <= SEED_MAX):
            raise self.error(f"must be -1 (random) or between 0 and {SEED_MAX}, got {value}")
        return int(value)

    def parse(self, text: str) -> int:
        low = str(text).strip().lower()
        if low in ("", "random", "none"):
            return -1
        try:
            value = int(low)
        except ValueError:
            raise self.error(f"expected a whole number or -1 for random, got {text!r}") from None
        return self.validate(value)

    @staticmethod
    def resolve(value: Optional[int]) -> int:
        """A concrete seed: ``value`` itself, or a fresh random one for ``-1``/``None``."""
        if value is None or value == -1:
            import secrets  # here, not at module level: start-up does not need it

            return secrets.randbelow(SEED_MAX + 1)
        return int(value)

    def describe(self) -> str:
        return f"seed, -1 for random ({self._default_text()})"


# ---- list parameters (API 1.2) ---------------------------------------------------------------

_INT_TEXT = r"[-+]?\d+"
_REAL_TEXT = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _range_item(text: str, number: str) -> Optional[tuple[str, str, Optional[str]]]:
    """``(start, stop, step)`` texts of a range item such as ``10-13``, ``0..100:25``,
    ``-3--1`` or ``1-3:0.5``; ``None`` if ``text`` is not a range."""
    m = re.fullmatch(rf"\s*({number})\s*(?:-|\.\.)\s*({number})\s*(?::\s*({number}))?\s*", text)
    return (m.group(1), m.group(2), m.group(3)) if m else None


@dataclass(frozen=True, kw_only=True)
class _ListParam(Param):
    """Shared behaviour of the list parameters: a list of numbers typed as ``1, 2, 10-13``
    (commas between items; ``A-B`` or ``A..B`` an inclusive range, ``A-B:S`` in steps of ``S``),
    or given as any sequence by Python callers. The run function receives a tuple; the session
    records a list. ``min_items``/``max_items`` bound the count (an empty list is refused only
    when ``required`` or ``min_items`` asks for more)."""

    default: tuple = ()
    min: Optional[float] = None
    max: Optional[float] = None
    min_items: int = 0
    max_items: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.min_items, int) or not isinstance(self.max_items, int) \
                or not 0 <= self.min_items <= self.max_items:
            raise ValueError(f"list parameter {self.name!r}: need 0 <= min_items <= max_items, got "
                             f"{self.min_items!r} and {self.max_items!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"list parameter {self.name!r}: min {self.min!r} is above max {self.max!r}")
        if isinstance(self.default, str):
            object.__setattr__(self, "default", self.parse(self.default))
        else:
            object.__setattr__(self, "default", tuple(self.default or ()))

    # one item, checked (subclasses)
    def _item(self, value: Any, where: str) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    # how an item is written: its pattern, its type, a name and an example of a range
    _number: ClassVar[str] = _INT_TEXT
    _convert: ClassVar[Callable[[str], Any]] = int
    _a_number: ClassVar[str] = "a whole number"
    _range_example: ClassVar[str] = "10-13"
    _step_needed: ClassVar[bool] = False

    def _expand(self, token: str) -> list[Any]:
        """The values one comma-separated item stands for: a number, or an inclusive range
        ``A-B`` / ``A..B`` with an optional step ``:S``."""
        convert = type(self)._convert
        if re.fullmatch(self._number, token):
            return [convert(token)]
        rng = _range_item(token, self._number)
        if rng is None:
            raise self.error(f"{token!r} is neither {self._a_number} nor a range like {self._range_example}")
        if rng[2] is None and self._step_needed:
            raise self.error(f"{token!r}: a range of real numbers needs a step, e.g. {rng[0]}-{rng[1]}:0.5")
        start, stop = convert(rng[0]), convert(rng[1])
        step = convert(rng[2]) if rng[2] is not None else 1
        if not step > 0:
            raise self.error(f"{token!r}: the step must be positive")
        count = int(math.floor(abs(stop - start) / step + 1e-9)) + 1
        if count > self.max_items:
            raise self.error(f"{token!r} makes {count} values; at most {self.max_items}")
        direction = 1 if stop >= start else -1
        values = [start + direction * step * i for i in range(count)]
        return [round(v, 12) for v in values] if convert is float else values

    def validate(self, value: Any) -> tuple:
        if value is None:
            value = ()
        if isinstance(value, str):
            return self.parse(value)
        if not isinstance(value, (list, tuple, range)) and hasattr(value, "tolist"):  # numpy arrays
            value = value.tolist()
        if not isinstance(value, (list, tuple, range)):
            value = (value,)  # one number
        items = tuple(self._item(v, f"item {i + 1}") for i, v in enumerate(value))
        self._check_count(len(items))
        return items

    def parse(self, text: str) -> tuple:
        text = str(text).strip()
        items: list[Any] = []
        if text:
            for token in text.replace(";", ",").split(","):
                if not token.strip():
                    raise self.error(f"an item is missing between two commas in {text!r}")
                items.extend(self._expand(token.strip()))
                if len(items) > self.max_items:
                    break
        return self.validate(items)

    def _check_count(self, n: int) -> None:
        if n > self.max_items:
            raise self.error(f"at most {self.max_items} values, got {'more' if n > self.max_items + 1 else n}")
        if n < self.min_items:
            raise self.error(f"at least {self.min_items} value{'s' if self.min_items != 1 else ''}, got {n}")

    def _bounded(self, value: Any, where: str) -> Any:
        lo, hi = self.min, self.max
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.error(f"{where} is {_fmt(value)}, outside [{'-inf' if lo is None else _fmt(lo)}, "
                             f"{'inf' if hi is None else _fmt(hi)}]")
        return value

    def format(self, value: Any) -> str:
        return ", ".join(_fmt(v) for v in (value or ()))

    def to_json(self, value: Any) -> Any:
        return list(value) if value is not None else []

    def describe(self) -> str:
        return f"{self.type_name}: {self._example}{_range_text(self)} ({self._default_text(self.format(self.default) or 'none')})"

    _example: ClassVar[str] = "1, 2, 10-13"


@dataclass(frozen=True, kw_only=True)
class IntListParam(_ListParam):
    """A list of whole numbers, typed as ``1, 2, 10-13`` (ranges inclusive; ``0-100:25`` in
    steps). ``min``/``max`` bound every value. Added in API 1.2."""

    type_name: ClassVar[str] = "int-list"
    default: tuple[int, ...] = ()
    min: Optional[int] = None
    max: Optional[int] = None

    def _item(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or value is None:
            raise self.error(f"{where}: expected a whole number, got {value!r}")
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise self.error(f"{where}: expected a whole number, got {value!r}") from None
        if isinstance(value, float):
            if not value.is_integer():
                raise self.error(f"{where}: expected a whole number, got {_fmt(value)}")
            value = int(value)
        try:
            import operator

            value = operator.index(value)
        except TypeError:
            raise self.error(f"{where}: expected a whole number, got {value!r}") from None
        return int(self._bounded(value, where))

    def format(self, value: Any) -> str:
        """Runs of three or more consecutive numbers are written as ranges: ``1-4, 10``."""
        items = [int(v) for v in (value or ())]
        parts: list[str] = []
        i = 0
        while i < len(items):
            j = i
            while j + 1 < len(items) and items[j + 1] == items[j] + 1:
                j += 1
            if j - i >= 2:
                parts.append(f"{items[i]}-{items[j]}" if items[i] >= 0 else f"{items[i]}..{items[j]}")
                i = j + 1
            else:
                parts.append(str(items[i]))
                i += 1
        return ", ".join(parts)


@dataclass(frozen=True, kw_only=True)
class FloatListParam(_ListParam):
    """A list of real numbers, typed as ``0.5, 1, 7.5`` (a range needs a step: ``1-3:0.5`` is
    1, 1.5, 2, 2.5, 3). ``min``/``max`` bound every value. Added in API 1.2."""

    type_name: ClassVar[str] = "float-list"
    default: tuple[float, ...] = ()
    _example: ClassVar[str] = "0.5, 1, 2-4:0.5"
    _number: ClassVar[str] = _REAL_TEXT
    _convert: ClassVar[Callable[[str], Any]] = float
    _a_number: ClassVar[str] = "a number"
    _range_example: ClassVar[str] = "1-3:0.5"
    _step_needed: ClassVar[bool] = True

    def _item(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or value is None:
            raise self.error(f"{where}: expected a number, got {value!r}")
        try:
            value = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise self.error(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(value):
            raise self.error(f"{where}: expected a finite number, got {_fmt(value)}")
        return float(self._bounded(value, where))


@dataclass(frozen=True, kw_only=True)
class SeedListParam(_ListParam):
    """A list of seeds, typed as ``1, 2, 10-13``; ``-1`` (or ``random``) in the list stands for
    a fresh random seed, which the runner draws, passes on and records like a :class:`SeedParam`'s,
    so every run can be repeated exactly. Added in API 1.2."""

    type_name: ClassVar[str] = "seed-list"
    default: tuple[int, ...] = ()
    min: Optional[int] = None
    max: Optional[int] = None
    _example: ClassVar[str] = "1, 2, 10-13 (-1: random)"

    def _item(self, value: Any, where: str) -> int:
        if isinstance(value, str) and value.strip().lower() == "random":
            return -1
        if isinstance(value, bool) or value is None:
            raise self.error(f"{where}: expected a seed (a whole number, -1 for random), got {value!r}")
        try:
            import operator

            value = operator.index(int(value) if isinstance(value, float) and value.is_integer() else value)
        except (TypeError, ValueError):
            raise self.error(f"{where}: expected a seed (a whole number, -1 for random), got {value!r}") from None
        if value != -1 and not 0 <= value <= SEED_MAX:
            raise self.error(f"{where} is {value}; seeds are -1 (random) or between 0 and {SEED_MAX}")
        return int(value)

    def _expand(self, token: str) -> list[Any]:
        if token.lower() == "random":
            return [-1]
        return super()._expand(token)

    format = IntListParam.format

    def resolve(self, values: Sequence[int]) -> tuple[int, ...]:
        """The list with each ``-1`` replaced by a fresh random seed (as :meth:`SeedParam.resolve`)."""
        return tuple(SeedParam.resolve(v) for v in values)

    def describe(self) -> str:
        return f"seed-list: {self._example} ({self._default_text(self.format(self.default) or 'none')})"


def _absolute(path: str | os.PathLike) -> str:
    """The absolute form of a local path (``~`` expanded), as runs record their inputs: a run
    repeated from another working folder still finds them. Symbolic links are kept."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def _is_result_ref(text: str) -> bool:
    return text.startswith(RESULT_REF_PREFIX) and text[len(RESULT_REF_PREFIX):].strip().isdigit()


@dataclass(frozen=True, kw_only=True)
class ImageParam(Param):
    """An input image. Its value is a reference: a file path or ``"result:<id>"`` (a result in
    the open session); Python callers may also pass an :class:`ImageResult`, a numpy array or a
    PIL image. Before the run function is called the runner resolves the reference, so the
    function receives an :class:`ImageResult` (or ``None`` when optional and empty)."""

    type_name: ClassVar[str] = "image"
    optional: bool = False
    result_kind: ClassVar[str] = "image"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.optional and self.required:
            raise ValueError(f"{self.type_name} parameter {self.name!r} cannot be both optional and required")

    def validate(self, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            if self.optional:
                return None
            raise self.error("an input is required (a file path or result:<id>)")
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str):
            text = value.strip()
            if text.startswith(RESULT_REF_PREFIX):
                if not _is_result_ref(text):
                    raise self.error(f"{text!r} is not a result reference like 'result:12'")
                return text
            if not Path(text).expanduser().is_file():
                raise self.error(f"file not found: {text}")
            return _absolute(text)
        if isinstance(value, Result):
            if value.kind not in (self.result_kind, "image", "mask"):
                raise self.error(f"expected an {self.result_kind}, got a {value.kind} result")
            return value
        if hasattr(value, "shape") or type(value).__module__.startswith("PIL"):
            return value
        raise self.error(f"expected a file path or result:<id>, got {type(value).__name__}")

    def parse(self, text: str) -> Any:
        return self.validate(text)

    def to_json(self, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        return f"<{self.result_kind} given in memory>"

    def describe(self) -> str:
        req = "optional" if self.optional and not self.required else "required"
        return f"{self.type_name}: file path or result:<id> ({req})"


@dataclass(frozen=True, kw_only=True)
class MaskParam(ImageParam):
    """An input mask (white = selected). ``image_param`` names the image parameter the mask is
    painted over in the form. The run function receives a :class:`MaskResult`."""

    type_name: ClassVar[str] = "mask"
    result_kind: ClassVar[str] = "mask"
    image_param: Optional[str] = None


@dataclass(frozen=True, kw_only=True)
class PathParam(Param):
    """A file or folder path. ``mode`` is ``"open"`` (an existing file), ``"save"`` (a file to
    write) or ``"dir"`` (a folder). ``filters`` are Qt-style, e.g. ``("Meshes (*.ply *.obj)",)``.
    With ``must_exist`` the path is checked at validation."""

    type_name: ClassVar[str] = "path"
    default: Optional[str] = None
    mode: str = "open"
    filters: tuple[str, ...] = ()
    must_exist: bool = True
    optional: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in ("open", "save", "dir"):
            raise ValueError(f"path parameter {self.name!r}: mode must be open, save or dir")
        if self.optional and self.required:
            raise ValueError(f"path parameter {self.name!r} cannot be both optional and required")
        object.__setattr__(self, "filters", tuple(self.filters))

    def validate(self, value: Any) -> Optional[str]:
        if value is None or (isinstance(value, str) and not value.strip()):
            if self.optional:
                return None
            raise self.error("a path is required")
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise self.error(f"expected a path, got {type(value).__name__}")
        path = Path(value.strip()).expanduser()
        if self.must_exist and self.mode != "save":
            if self.mode == "dir" and not path.is_dir():
                raise self.error(f"folder not found: {path}")
            if self.mode == "open" and not path.is_file():
                raise self.error(f"file not found: {path}")
        # what is on disk is recorded by its absolute path (Reproduce from another folder finds
        # it); a value that is not a path here (a dataset id, a file still to write) stays as given
        return _absolute(path) if path.exists() else str(path)

    def parse(self, text: str) -> Optional[str]:
        return self.validate(text)

    def describe(self) -> str:
        return f"path ({self.mode}{'' if self.optional and not self.required else ', required'})"


@dataclass(frozen=True, kw_only=True)
class ModelParam(Param):
    """A model reference: one of the named ``aliases`` (``"default"`` = the bundled model) or a
    path to a local model folder/file (diffusers folder, ``.safetensors``, ``.onnx``). ``kind``
    says what the tool expects (``"diffusers"``, ``"onnx"``, ``"safetensors"``, ...). The run
    function receives the string; the runner records it (and its hash) with the run."""

    type_name: ClassVar[str] = "model"
    default: str = "default"
    kind: str = "diffusers"
    aliases: tuple[str, ...] = ("default",)
    must_exist: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "aliases", tuple(self.aliases))

    def validate(self, value: Any) -> str:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value.strip():
            raise self.error("a model is required (a name such as 'default' or a path)")
        text = value.strip()
        if text in self.aliases:
            return text
        path = Path(text).expanduser()
        if self.must_exist and not path.exists():
            names = ", ".join(repr(a) for a in self.aliases)
            hint = f" or one of {names}" if names else ""
            raise self.error(_model_not_found(text, f"give a local path{hint}"))
        # a local model is recorded by its absolute path (Reproduce from another folder finds
        # it); a name that is not a path on disk stays a name for studio_resolve_model
        return _absolute(path) if path.exists() else str(path)

    def parse(self, text: str) -> str:
        return self.validate(text)

    def describe(self) -> str:
        names = " or ".join(repr(a) for a in self.aliases)
        return f"model ({self.kind}: {names + ' or ' if names else ''}a local path; {self._default_text()})"


# --------------------------------------------------------------------------------------------
# Records returned by hooks
# --------------------------------------------------------------------------------------------

#: Suggested values of :attr:`ToolSpec.group`.
TOOL_GROUPS = ("generate", "edit", "inpaint", "view3d", "rl", "analysis", "other")


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    """A tool: something the user runs with parameters to make results.

    - ``id``: stable kebab-case name used by the CLI (``implicit-studio run ID``) and stored in
      sessions; unique across plugins (a later duplicate is rejected).
    - ``title``, ``description``: shown in the tool list and ``--help``.
    - ``group``: where it is listed (see :data:`TOOL_GROUPS`).
    - ``params``: the typed parameters, in form order.
    - ``run``: ``"module:function"`` called as ``function(ctx, **params)`` with a
      :class:`RunContext` and validated values; it returns a :class:`Result`, a sequence of them,
      or ``None``. Imported only when the tool first runs.
    - ``results``: the result kinds it produces (from :data:`RESULT_KINDS`).
    - ``panel``: optional ``"module:Factory"`` of a Qt widget replacing the generated form; called
      as ``Factory(tool=spec, parent=None)``. It must expose ``values() -> dict``.
    - ``backends``: compute back-ends it uses (``"numpy"``, ``"torch"``, ``"onnx"``); tools with
      ``torch``/``onnx`` run on the chosen accelerator queue, others on the CPU queue.
    - ``requires_api``: the API version it was written for.
    - ``plugin``: filled in by the plugin manager with the plugin's name.
    - ``seeded`` (API 1.2): ``False`` for a tool without a run-level seed (it has no
      :class:`SeedParam`; say a sweep over a :class:`SeedListParam`, or a deterministic filter):
      its runs record no seed and :attr:`RunContext.seed` is ``0``. ``True`` (the default): the
      runner resolves the tool's :class:`SeedParam`, or draws a seed for a tool without one, and
      records it.
    - ``migrate_params`` (API 1.2): optional ``"module:function"`` called as
      ``function(version, params) -> dict`` when parameters recorded by another version of the
      plugin (``version``, ``""`` if unknown) are used again (Use, Reproduce, a dropped PNG):
      return them as this version takes them (rename, convert, drop). Whatever still does not fit
      the tool is named in a message, never dropped silently.
    """

    id: str
    title: str
    run: str
    params: tuple[Param, ...] = ()
    results: tuple[str, ...] = ("image",)
    description: str = ""
    group: str = "other"
    panel: Optional[str] = None
    backends: tuple[str, ...] = ("numpy",)
    requires_api: str = API_VERSION
    plugin: str = ""
    icon: Optional[str] = None
    seeded: bool = True
    migrate_params: Optional[str] = None

    def __post_init__(self) -> None:
        if not is_kebab_case(self.id):
            raise ValueError(f"tool id {self.id!r} must be kebab-case, e.g. 'text-to-image'")
        _check_ref(self.run, f"tool {self.id!r}: run")
        _check_ref(self.panel, f"tool {self.id!r}: panel", optional=True)
        _check_ref(self.migrate_params, f"tool {self.id!r}: migrate_params", optional=True)
        if not isinstance(self.seeded, bool):
            raise ValueError(f"tool {self.id!r}: seeded must be True or False, got {self.seeded!r}")
        if not self.seeded and any(isinstance(p, SeedParam) for p in self.params):
            raise ValueError(f"tool {self.id!r} has a seed parameter, so it cannot be seeded=False")
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "results", tuple(self.results))
        object.__setattr__(self, "backends", tuple(self.backends))
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"tool {self.id!r}: parameter names must be unique, got {names}")
        for p in self.params:
            if not isinstance(p, Param):
                raise ValueError(f"tool {self.id!r}: params must be Param declarations, got {p!r}")
        unknown = [k for k in self.results if k not in RESULT_KINDS]
        if unknown:
            raise ValueError(f"tool {self.id!r}: unknown result kinds {unknown}; use {RESULT_KINDS}")

    def param(self, name: str) -> Param:
        """The parameter called ``name`` (``KeyError`` if none)."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"tool {self.id!r} has no parameter {name!r}")

    def defaults(self) -> dict[str, Any]:
        """The default value of every parameter."""
        return {p.name: p.default for p in self.params}

    def validate(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Fill defaults and validate every value (:meth:`Param.check`: a ``required`` one must
        not be empty); raise :class:`ParamError` on the first bad or unknown name. This is the
        single check shared by the form, the CLI and the runner."""
        known = {p.name for p in self.params}
        for key in values:
            if key not in known:
                opts = ", ".join(sorted(known)) or "none"
                raise ParamError(f"tool {self.id!r} has no parameter {key!r} (parameters: {opts})", key)
        out: dict[str, Any] = {}
        for p in self.params:
            out[p.name] = p.check(values[p.name] if p.name in values else p.default)
        return out


@dataclass(frozen=True, kw_only=True)
class ReaderSpec:
    """Opens files dropped on the window or given on the command line.

    ``patterns`` are shell patterns (``"*.ply"``); ``read`` is ``"module:function"`` called as
    ``function(path) -> Result | list[Result]``; it may raise ``ValueError`` for a file it cannot
    parse. ``priority``: higher readers are tried first.
    """

    id: str
    title: str
    patterns: tuple[str, ...]
    read: str
    priority: int = 0
    plugin: str = ""

    def __post_init__(self) -> None:
        if not is_kebab_case(self.id):
            raise ValueError(f"reader id {self.id!r} must be kebab-case")
        _check_ref(self.read, f"reader {self.id!r}: read")
        object.__setattr__(self, "patterns", tuple(self.patterns))

    def matches(self, path: str | os.PathLike) -> bool:
        """True if the file name matches one of the patterns (case-insensitive)."""
        import fnmatch

        name = Path(path).name.lower()
        return any(fnmatch.fnmatch(name, pat.lower()) for pat in self.patterns)


@dataclass(frozen=True, kw_only=True)
class WriterSpec:
    """Exports results. ``kinds`` are the result kinds accepted, ``extensions`` the file types
    written (``".ply"``); ``write`` is ``"module:function"`` called as ``function(result, path)``."""

    id: str
    title: str
    kinds: tuple[str, ...]
    extensions: tuple[str, ...]
    write: str
    plugin: str = ""

    def __post_init__(self) -> None:
        if not is_kebab_case(self.id):
            raise ValueError(f"writer id {self.id!r} must be kebab-case")
        _check_ref(self.write, f"writer {self.id!r}: write")
        object.__setattr__(self, "kinds", tuple(self.kinds))
        object.__setattr__(self, "extensions", tuple(e if e.startswith(".") else "." + e for e in self.extensions))


@dataclass(frozen=True, kw_only=True)
class ViewerSpec:
    """Shows results of one kind. ``widget`` is ``"module:Factory"`` of a Qt widget called as
    ``Factory(parent=None)``, with a method ``set_result(result)``. The viewer with the highest
    ``priority`` for a kind is the default; others are offered in the view menu."""

    id: str
    title: str
    kind: str
    widget: str
    priority: int = 0
    plugin: str = ""

    def __post_init__(self) -> None:
        if not is_kebab_case(self.id):
            raise ValueError(f"viewer id {self.id!r} must be kebab-case")
        _check_ref(self.widget, f"viewer {self.id!r}: widget")


@dataclass(frozen=True, kw_only=True)
class SettingsSpec:
    """A plugin's preferences page, generated from typed parameters like a tool form. Values are
    stored in the user's settings under ``section`` and given to run functions through
    :meth:`RunContext.setting`. ``section`` is kebab-case: lower-case letters and digits in words
    joined by single dashes (``"my-filters"``; ``"my_filters"`` is refused), and, being shared
    by all plugins, best starts with the plugin's name."""

    section: str
    title: str
    params: tuple[Param, ...] = ()
    plugin: str = ""

    def __post_init__(self) -> None:
        if not is_kebab_case(self.section):
            raise ValueError(f"settings section {self.section!r} must be kebab-case: lower-case words joined by "
                             f"single dashes, e.g. {re.sub(r'[^a-z0-9]+', '-', str(self.section).lower()).strip('-')!r}")
        object.__setattr__(self, "params", tuple(self.params))


@dataclass(frozen=True, kw_only=True)
class RewardSpec:
    """A reward model for guided editing (h-Edit). ``load`` is ``"module:function"`` called as
    ``function(ctx)``; it returns a callable scoring a batch of images (torch tensor in
    ``[-1, 1]``, shape ``Bx3xHxW``) given a prompt: ``score(images, prompt) -> tensor[B]``.
    Tools find them with :attr:`RunContext.rewards` and :meth:`RunContext.load_reward`."""

    id: str
    title: str
    load: str
    description: str = ""
    plugin: str = ""

    def __post_init__(self) -> None:
        if not is_kebab_case(self.id):
            raise ValueError(f"reward id {self.id!r} must be kebab-case")
        _check_ref(self.load, f"reward {self.id!r}: load")


@dataclass(frozen=True, kw_only=True)
class CommandSpec:
    """An extra ``implicit-studio NAME ...`` sub-command. ``main`` is ``"module:function"`` called
    as ``function(argv: list[str]) -> int`` (exit status) with the arguments after ``NAME``. A
    ``main`` that has a parameter named ``ctx`` is also given the plugin's :class:`RunContext`
    (the user's plugin settings, the plugin's folders, model resolution; API 1.1)."""

    name: str
    help: str
    main: str
    plugin: str = ""

    def __post_init__(self) -> None:
        if not is_kebab_case(self.name):
            raise ValueError(f"command name {self.name!r} must be kebab-case")
        _check_ref(self.main, f"command {self.name!r}: main")


#: Kinds of :class:`SessionEvent`.
SESSION_EVENT_KINDS = (
    "session-opened",
    "session-closed",
    "run-started",
    "run-finished",
    "run-failed",
    "run-cancelled",
)


@dataclass(frozen=True, kw_only=True)
class SessionEvent:
    """Something that happened in the session, given to ``studio_session_event`` observers.
    ``kind`` is one of :data:`SESSION_EVENT_KINDS`; ``run_id``/``tool_id`` are set for run events;
    ``error`` holds the message of a failed run."""

    kind: str
    session_path: Optional[str] = None
    run_id: Optional[int] = None
    tool_id: Optional[str] = None
    error: Optional[str] = None
    data: Mapping[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Result:
    """Base of every result. ``kind`` names the type (``"image"``, ``"mesh"``...); ``metadata``
    is a JSON-safe dict stored with the result; ``label`` is a short caption."""

    kind: ClassVar[str] = "result"
    metadata: dict[str, Any] = field(default_factory=dict)
    label: str = ""


def _np():
    import numpy

    return numpy


@dataclass(kw_only=True)
class ImageResult(Result):
    """An RGB(A) image. ``image`` may be given as an ``HxWx3``/``HxWx4`` ``uint8`` array, an
    ``HxW`` gray array, a float array in ``[0, 1]`` or a PIL image; it is stored as a ``uint8``
    numpy array of shape ``HxWx3`` or ``HxWx4``."""

    kind: ClassVar[str] = "image"
    image: Any

    def __post_init__(self) -> None:
        self.image = _to_uint8_image(self.image, "image")

    @property
    def array(self):
        """The pixels, ``HxWxC`` ``uint8``."""
        return self.image

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    def to_pil(self):
        """The image as a PIL image (imports PIL)."""
        from PIL import Image

        return Image.fromarray(self.image)


def _to_uint8_image(value: Any, what: str):
    np = _np()
    if type(value).__module__.startswith("PIL"):
        mode = "RGBA" if value.mode in ("RGBA", "LA", "P") and "A" in value.getbands() else "RGB"
        value = np.asarray(value.convert(mode))
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"{what} must be HxWx3, HxWx4 or HxW, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {arr.shape})")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{what} contains NaN or infinite values")
            arr = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
        elif arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * 255
        else:
            if arr.min() < 0 or arr.max() > 255:
                raise ValueError(f"{what} integer values must be within 0..255")
            arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr)


@dataclass(kw_only=True)
class MaskResult(Result):
    """A mask, ``HxW``; stored as ``uint8`` with 255 where selected. Accepts bool, 0/1, 0..255
    or float ``[0, 1]`` arrays and PIL images; ``bool_mask`` gives the selection as booleans."""

    kind: ClassVar[str] = "mask"
    mask: Any

    def __post_init__(self) -> None:
        np = _np()
        value = self.mask
        if type(value).__module__.startswith("PIL"):
            value = np.asarray(value.convert("L"))
        arr = np.asarray(value)
        if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
            arr = arr[:, :, 0]
        if arr.ndim != 2:
            raise ValueError(f"mask must be HxW, got shape {arr.shape}")
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * 255
        elif np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
        else:
            if arr.size and arr.max() <= 1:
                arr = arr.astype(np.uint8) * 255
            else:
                arr = np.clip(arr, 0, 255).astype(np.uint8)
        self.mask = np.ascontiguousarray(arr)

    @property
    def array(self):
        return self.mask

    @property
    def bool_mask(self):
        return self.mask >= 128

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    @property
    def height(self) -> int:
        return int(self.mask.shape[0])


@dataclass(kw_only=True)
class MeshResult(Result):
    """A triangle mesh: ``vertices`` ``Nx3`` float, ``faces`` ``Mx3`` int, optional per-vertex
    ``normals`` ``Nx3`` and ``colors`` ``Nx3`` ``uint8``. Stored as binary PLY."""

    kind: ClassVar[str] = "mesh"
    vertices: Any
    faces: Any
    normals: Any = None
    colors: Any = None

    def __post_init__(self) -> None:
        np = _np()
        self.vertices = np.asarray(self.vertices, dtype=np.float32)
        self.faces = np.asarray(self.faces, dtype=np.int64)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise ValueError(f"mesh vertices must be Nx3, got shape {self.vertices.shape}")
        if self.faces.size == 0:
            self.faces = self.faces.reshape(0, 3)
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"mesh faces must be Mx3, got shape {self.faces.shape}")
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= len(self.vertices)):
            raise ValueError("mesh faces refer to vertices that do not exist")
        if self.normals is not None:
            self.normals = np.asarray(self.normals, dtype=np.float32)
            if self.normals.shape != self.vertices.shape:
                raise ValueError("mesh normals must have the same shape as the vertices")
        if self.colors is not None:
            self.colors = _to_uint8_colors(self.colors, len(self.vertices))


def _to_uint8_colors(value: Any, n: int):
    np = _np()
    arr = np.asarray(value)
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.clip(np.rint(arr * 255.0), 0, 255)
    arr = arr.astype(np.uint8)
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] not in (3, 4):
        raise ValueError(f"mesh colors must be Nx3 or Nx4 with N={n}, got shape {arr.shape}")
    return arr


@dataclass(kw_only=True)
class ScalarFieldResult(Result):
    """Samples of a scalar function on a regular 2-D or 3-D grid (e.g. an SDF): ``values`` of
    shape ``HxW`` or ``DxHxW``; ``bounds`` the ``(min, max)`` corner coordinates per axis, in
    the same axis order. Stored as NPZ."""

    kind: ClassVar[str] = "field"
    values: Any
    bounds: Any = None
    name: str = "value"

    def __post_init__(self) -> None:
        np = _np()
        self.values = np.asarray(self.values, dtype=np.float32)
        if self.values.ndim not in (2, 3):
            raise ValueError(f"field values must be 2-D or 3-D, got shape {self.values.shape}")
        if self.bounds is None:
            self.bounds = tuple((-1.0, 1.0) for _ in range(self.values.ndim))
        bounds = tuple((float(lo), float(hi)) for lo, hi in self.bounds)
        if len(bounds) != self.values.ndim:
            raise ValueError("field bounds need one (min, max) pair per axis")
        self.bounds = bounds


@dataclass(kw_only=True)
class DistributionSeries(Result):
    """Return distributions over time (distributional RL), or any series of 1-D distributions.

    ``representation`` is ``"categorical"`` (``support`` holds the K atom values, ``weights`` the
    probabilities) or ``"quantile"`` (``support`` holds the K quantile fractions tau, ``weights``
    the quantile values). ``weights`` has shape ``TxK`` or ``TxAxK`` (time steps x actions x K);
    ``steps`` (length T) labels the time axis, ``series_labels`` (length A) the actions.
    Stored as NPZ."""

    kind: ClassVar[str] = "distribution"
    support: Any
    weights: Any
    representation: str = "categorical"
    steps: Any = None
    series_labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        np = _np()
        self.support = np.asarray(self.support, dtype=np.float32)
        self.weights = np.asarray(self.weights, dtype=np.float32)
        if self.representation not in ("categorical", "quantile"):
            raise ValueError("distribution representation must be 'categorical' or 'quantile'")
        if self.support.ndim != 1:
            raise ValueError(f"distribution support must be 1-D, got shape {self.support.shape}")
        if self.weights.ndim == 1:
            self.weights = self.weights[None, :]
        if self.weights.ndim not in (2, 3) or self.weights.shape[-1] != self.support.shape[0]:
            raise ValueError(
                f"distribution weights must be TxK or TxAxK with K={self.support.shape[0]}, "
                f"got shape {self.weights.shape}"
            )
        t = self.weights.shape[0]
        self.steps = np.arange(t) if self.steps is None else np.asarray(self.steps)
        if self.steps.shape != (t,):
            raise ValueError(f"distribution steps must have length {t}")
        self.series_labels = tuple(self.series_labels)


@dataclass(kw_only=True)
class TableResult(Result):
    """A table: ``columns`` names and ``rows`` (sequences of JSON-safe values of equal length).
    Stored as CSV."""

    kind: ClassVar[str] = "table"
    columns: tuple[str, ...]
    rows: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.columns = tuple(str(c) for c in self.columns)
        rows = [tuple(r) for r in self.rows]
        for i, r in enumerate(rows):
            if len(r) != len(self.columns):
                raise ValueError(f"table row {i} has {len(r)} values for {len(self.columns)} columns")
        self.rows = rows


@dataclass(kw_only=True)
class FileResult(Result):
    """Any other file: either ``data`` bytes or a ``path`` to copy, with its extension ``ext``
    (``".onnx"``, ``".gif"``...)."""

    kind: ClassVar[str] = "file"
    data: Optional[bytes] = None
    path: Optional[str] = None
    ext: str = ""

    def __post_init__(self) -> None:
        if (self.data is None) == (self.path is None):
            raise ValueError("a file result needs exactly one of data or path")
        if self.path is not None:
            self.path = os.fspath(self.path)
            if not self.ext:
                self.ext = Path(self.path).suffix
        if self.ext and not self.ext.startswith("."):
            self.ext = "." + self.ext

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return bytes(self.data)
        return Path(self.path).read_bytes()


# --------------------------------------------------------------------------------------------
# Run context
# --------------------------------------------------------------------------------------------


class RunContext:
    """What a run function gets as its first argument.

    Run functions report with :meth:`progress` (which is also where a cancel request takes
    effect), :meth:`preview` and :meth:`log_metric`; they read the chosen ``device`` and ``dtype``
    (with ``ort_providers`` for ONNX Runtime), the concrete ``seed``, a ``logger``, plugin
    settings (:meth:`setting`) and inputs from the session (:meth:`load_input`).

    What a plugin needs from the studio comes through the context too (API 1.1), never from the
    studio's private modules: ``plugin`` (its name), :attr:`resources_dir` (the files it ships),
    :attr:`data_dir` and :attr:`cache_dir` (folders of its own in the user's folders, created on
    first use), :meth:`resolve_model` (model names such as ``"default"`` through the
    ``studio_resolve_model`` hook, or local paths) and :attr:`rewards` / :meth:`load_reward`
    (reward models contributed by plugins through ``studio_rewards``).

    A tool can run another tool (API 1.2): :meth:`run_tool` runs it in this run's thread, with
    this run's cancel, device and a share of its progress bar, records it in the session as a
    child run of this one, and returns its results; :attr:`tools` lists the tools that can be
    run, with their declarations.

    The studio's job runner builds contexts wired to the window or the CLI, and a plugin command
    whose ``main`` has a ``ctx`` parameter gets one too. Plugin authors can build one directly in
    unit tests: ``RunContext()`` runs on the CPU with seed 0, ignores progress, resolves model
    paths only (no names), knows no rewards and no other tools; its folders are those a run of
    ``plugin`` would get (set ``IMPLICIT_STUDIO_DATA_DIR`` and ``IMPLICIT_STUDIO_CACHE_DIR`` to
    keep a test out of the user's folders, or pass ``data_dir=``/``cache_dir=``). Pass
    ``on_progress=`` etc. to observe calls, and ``tool_runner=`` (a function
    ``(ctx, tool_id, params) -> list[Result]``) with ``tools=`` to stand in for other tools.
    """

    def __init__(
        self,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        seed: int = 0,
        ort_providers: Sequence[str] = ("CPUExecutionProvider",),
        logger: Optional[logging.Logger] = None,
        tool_id: str = "",
        run_id: Optional[int] = None,
        settings: Optional[Mapping[str, Any]] = None,
        on_progress: Optional[Callable[[int, int, str], None]] = None,
        on_preview: Optional[Callable[[Any], None]] = None,
        on_metric: Optional[Callable[[str, float, float], None]] = None,
        input_loader: Optional[Callable[[str], "Result"]] = None,
        cancel_event: Optional[threading.Event] = None,
        plugin: str = "",
        resources_dir: Optional[str | os.PathLike] = None,
        data_dir: Optional[str | os.PathLike] = None,
        cache_dir: Optional[str | os.PathLike] = None,
        model_lookup: Optional[Callable[[str], Optional[str | os.PathLike]]] = None,
        rewards: Optional[Mapping[str, "RewardSpec"]] = None,
        tools: Optional[Mapping[str, "ToolSpec"]] = None,
        tool_runner: Optional[Callable[["RunContext", str, dict[str, Any]], list["Result"]]] = None,
    ) -> None:
        self.device = device
        self.dtype = dtype
        self.seed = int(seed)
        self.ort_providers = list(ort_providers)
        self.logger = logger or logging.getLogger(f"implicit_studio.tool.{tool_id or 'run'}")
        self.tool_id = tool_id
        self.run_id = run_id
        #: The name of the plugin the run belongs to ("" when built by hand).
        self.plugin = plugin
        self._settings = dict(settings or {})
        self._on_progress = on_progress
        self._on_preview = on_preview
        self._on_metric = on_metric
        self._input_loader = input_loader
        self._cancel = cancel_event or threading.Event()
        self._resources_dir = Path(resources_dir) if resources_dir is not None else None
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._model_lookup = model_lookup
        self._rewards = dict(rewards or {})
        self._tools = dict(tools or {})
        self._tool_runner = tool_runner
        # the last progress this run reported: a tool it runs fills that step of the bar
        self._slot: tuple[int, int, str] = (0, 0, "")

    # -- cancellation ------------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        """True once the user asked to cancel this run."""
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Request cancellation (the runner calls this; a run may call it to stop itself)."""
        self._cancel.set()

    def check_cancelled(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._cancel.is_set():
            raise Cancelled(f"{self.tool_id or 'run'} cancelled")

    # -- reporting ---------------------------------------------------------------------------
    def progress(self, step: int, total: int, message: str = "") -> None:
        """Report that ``step`` of ``total`` steps are done; raises :class:`Cancelled` if the run
        was cancelled. Call it once per step (e.g. per denoising step). ``step`` and ``total``
        are whole numbers (``0 <= step``, ``0 <= total``; a ``total`` of 0 means "unknown"),
        ``message`` is text; anything else raises ``TypeError``/``ValueError`` naming the
        argument. A tool run with :meth:`run_tool` right after ``progress(i, n)`` fills the bar
        from ``i/n`` to ``(i+1)/n``."""
        step_i = _progress_number(step, "step")
        total_i = _progress_number(total, "total")
        if not isinstance(message, str):
            raise TypeError(f"ctx.progress(step, total, message): message must be text, got "
                            f"{type(message).__name__} {message!r}")
        self.check_cancelled()
        self._slot = (step_i, total_i, message)
        if self._on_progress is not None:
            self._on_progress(step_i, total_i, message)

    def _child_progress(self, title: str) -> Callable[[int, int, str], None]:
        """The progress callback of a tool this run runs: the child's steps are mapped into the
        step of this run's bar that was current when the child started."""
        step, total, message = self._slot
        if total > 0:
            step = min(step, total - 1)

        def report(child_step: int, child_total: int, child_message: str) -> None:
            self.check_cancelled()
            if self._on_progress is None:
                return
            text = f"{title}: {child_message}" if child_message else f"{title} {child_step}/{child_total}"
            text = f"{message} · {text}" if message else text
            if total <= 0:  # the caller reported nothing (or an unknown total): the child has the bar
                self._on_progress(child_step, child_total, text)
            elif child_total <= 0:
                self._on_progress(step, total, text)
            else:
                done = min(max(child_step, 0), child_total)
                self._on_progress(step * child_total + done, total * child_total, text)

        return report

    def preview(self, image: Any) -> None:
        """Show an intermediate image (array, PIL image or :class:`ImageResult`). Cheap to call;
        the window shows the latest one at most a few times a second."""
        if self._on_preview is not None:
            if not isinstance(image, ImageResult):
                image = ImageResult(image=image)
            self._on_preview(image)

    def log_metric(self, name: str, step: float, value: float) -> None:
        """Add a point to the live curve ``name`` (loss, reward, PSNR...)."""
        if self._on_metric is not None:
            self._on_metric(str(name), float(step), float(value))

    # -- inputs and settings -----------------------------------------------------------------
    def load_input(self, ref: str) -> Result:
        """Load an input by reference: ``"result:<id>"`` from the session, or a file path (read
        through the reader hooks). Image and mask parameters are already resolved by the runner,
        so this is for tools that take further references."""
        if self._input_loader is None:
            if isinstance(ref, str) and not ref.startswith(RESULT_REF_PREFIX) and Path(ref).is_file():
                return ImageResult(image=_read_image_file(ref), metadata={"source": ref})
            raise ToolError(f"cannot load input {ref!r}: no session is open")
        return self._input_loader(ref)

    def setting(self, section: str, name: str, default: Any = None) -> Any:
        """A plugin setting (declared with :class:`SettingsSpec`), or ``default``."""
        return self._settings.get(section, {}).get(name, default)

    # -- the plugin's folders (API 1.1) -------------------------------------------------------
    @property
    def resources_dir(self) -> Path:
        """The read-only files the plugin ships: for the built-in plugins the studio's bundled
        ``resources/`` folder (models, samples), for others the ``resources`` folder inside the
        plugin's package. Added in API 1.1."""
        if self._resources_dir is None:
            from app.paths import resources_dir

            self._resources_dir = resources_dir()
        return self._resources_dir

    @property
    def data_dir(self) -> Path:
        """The plugin's folder for files the user keeps (trained weights, recordings), in the
        studio's data folder (``<data>/plugin-data/<plugin>``); created on first use. Added in
        API 1.1."""
        if self._data_dir is None:
            from app.settings import plugin_data_dir

            self._data_dir = plugin_data_dir(self.plugin)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        return self._data_dir

    @property
    def cache_dir(self) -> Path:
        """The plugin's folder for files that can be made again (exports, converted weights,
        precomputed grids) (``<cache>/plugin-cache/<plugin>``); created on first use. Added in
        API 1.1."""
        if self._cache_dir is None:
            from app.settings import plugin_cache_dir

            self._cache_dir = plugin_cache_dir(self.plugin)
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        return self._cache_dir

    # -- models and rewards (API 1.1) ---------------------------------------------------------
    def resolve_model(self, ref: str | os.PathLike) -> Path:
        """The local file or folder a model reference stands for: a name that a plugin resolves
        through the ``studio_resolve_model`` hook (``"default"``: the bundled model), or a local
        path. Raises :class:`ToolError` with the one message for a model that is not there. The
        runner records the same resolution (and :func:`model_fingerprint`) with the run. Added
        in API 1.1."""
        text = os.fspath(ref).strip() if ref is not None else ""
        if not text:
            raise ToolError("no model given: choose a model by name (such as 'default') or a local path")
        found = self._model_lookup(text) if self._model_lookup is not None else None
        if found is not None:
            path = Path(found)
            if not path.exists():
                raise ToolError(_model_not_found(text, f"{path} does not exist; reinstall the plugin that "
                                                       "provides it or choose another model"))
            return path
        path = Path(text).expanduser()
        if not path.exists():
            raise ToolError(_model_not_found(text, "give a local model folder or file, or a name a plugin "
                                                   "provides such as 'default'"))
        return path

    @property
    def rewards(self) -> Mapping[str, "RewardSpec"]:
        """The reward models plugins contribute (``studio_rewards``), by id. Added in API 1.1."""
        return dict(self._rewards)

    def load_reward(self, reward_id: str) -> Callable[..., Any]:
        """Build the scoring callable of the reward ``reward_id`` for this run (its ``load``
        function called with this context); :class:`ToolError` naming the known ids if there is
        none. Added in API 1.1."""
        spec = self._rewards.get(reward_id)
        if spec is None:
            known = ", ".join(sorted(self._rewards)) or "none"
            raise ToolError(f"unknown reward {reward_id!r}; rewards from plugins: {known}")
        return load_ref(spec.load)(self)

    # -- other tools (API 1.2) ------------------------------------------------------------------
    @property
    def tools(self) -> Mapping[str, "ToolSpec"]:
        """The tools this run can run with :meth:`run_tool`, by id, with their declarations
        (read-only; the tools of disabled plugins are not in it). Added in API 1.2."""
        import types

        return types.MappingProxyType(self._tools)

    def run_tool(self, tool_id: str, /, **params: Any) -> list["Result"]:
        """Run the tool ``tool_id`` with ``params`` (its parameter names; leave out what should
        keep its default) and return its results.

        The other tool runs here, in this run's thread, through the studio's run controller, the
        same way the window and the command line run it: its parameters are validated, its seed
        and model resolved and recorded, it gets this run's device and its own plugin's settings
        and folders, and it is recorded in the session as a *child run* of this one (the history
        shows it under this run). It shares this run's cancel: a cancel request stops it and
        raises :class:`Cancelled` here, carrying whatever results it kept
        (``Cancelled.results``). Its progress fills the step of this run's bar that was current
        when it started (see :meth:`progress`); its previews are shown as this run's.

        Raises :class:`ToolError` for a tool that is not installed or whose plugin is disabled,
        for bad parameters (naming the tool and the parameter), when the other tool fails (its
        message; its run is recorded as failed), and when a numpy-only tool (``backends``
        without ``"torch"``/``"onnx"``) asks for a torch or ONNX tool: declare those backends on
        the calling tool so it runs on the accelerator's queue. Added in API 1.2."""
        if not isinstance(tool_id, str) or not tool_id:
            raise ToolError(f"run_tool needs a tool id such as 'text-to-image', got {tool_id!r}")
        if self._tool_runner is None:
            raise ToolError(
                f"cannot run the tool {tool_id!r}: this run context was made without the studio "
                "(a plain RunContext() in a unit test); run the calling tool through the studio "
                "(the run_tool fixture, implicit-studio run), or pass RunContext(tool_runner=...)")
        out = self._tool_runner(self, tool_id, dict(params))
        return list(out or [])

    # -- device helpers (import heavy libraries only when called) -----------------------------
    def numpy_rng(self):
        """A ``numpy.random.Generator`` seeded with :attr:`seed`."""
        return _np().random.default_rng(self.seed)

    def torch_device(self):
        """``torch.device`` for :attr:`device` (imports torch)."""
        import torch

        return torch.device(self.device)

    def torch_dtype(self):
        """The ``torch.dtype`` named by :attr:`dtype` (imports torch)."""
        import torch

        return getattr(torch, self.dtype)

    def torch_generator(self):
        """A ``torch.Generator`` on :attr:`device` seeded with :attr:`seed` (imports torch)."""
        import torch

        gen_device = "cpu" if self.device == "mps" else self.device
        return torch.Generator(device=gen_device).manual_seed(self.seed)


def _progress_number(value: Any, what: str) -> int:
    """A step or total of :meth:`RunContext.progress`: a whole number from 0 (an integral float
    or a numpy number is accepted); ``TypeError``/``ValueError`` with a sentence otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__index__") \
            and type(value).__module__ != "numpy":
        raise TypeError(f"ctx.progress(step, total, message): {what} must be a whole number, got "
                        f"{type(value).__name__} {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"ctx.progress(step, total, message): {what} must be a whole number, got "
                        f"{type(value).__name__} {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"ctx.progress(step, total, message): {what} must be 0 or more, got {value!r}")
    return int(number)


def _model_not_found(ref: str, hint: str) -> str:
    """The one sentence for a model reference that names nothing on disk."""
    return f"model not found: {ref} ({hint})"


def model_fingerprint(path: str | os.PathLike) -> str:
    """The studio's one fingerprint of a model file or folder: 64 hex digits of sha256 (a file:
    of its bytes; a folder: of its weight and config files' names and hashes). The runner
    records it with every run that has a :class:`ModelParam`; write the same one into your own
    metadata. Cached by path, size and modification time, so large models are read once.
    ``FileNotFoundError`` if nothing is at ``path``. Added in API 1.1."""
    from app.fingerprint import model_fingerprint as fingerprint

    return fingerprint(path)


def _read_image_file(path: str):
    from PIL import Image

    with Image.open(path) as img:
        mode = "RGBA" if "A" in img.getbands() else "RGB"
        return _np().asarray(img.convert(mode))
