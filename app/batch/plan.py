"""The batch plan: one tool, fixed parameters and axes to sweep, expanded to items (no Qt).

A plan is written in TOML (or built as a dict by the window's Batch dock)::

    tool = "text-to-image"
    name = "seed x guidance"          # optional
    device = "cuda"                   # optional: auto, cpu, cuda, cuda:N, mps
    [params]                          # fixed parameters, as `implicit-studio run` takes them
    prompt = "a red circle in the center on a white background"
    steps = 5
    [sweep]                           # one axis per parameter; items are every combination
    seed = [1, 2, 3, 4]               # a list of values
    guidance = [3.0, 7.0]
    strength = { start = 0.2, stop = 0.8, step = 0.2 }   # a range, stop included
    eta = { start = 0.0, stop = 1.0, num = 5 }           # evenly spaced, ends included
    seed = { seeds = 8, start = 100 }                    # a seed list: 100 .. 107
    image = { files = "inputs/*.png" }                   # a glob of input files
    image = { folder = "inputs", pattern = "*.jpg" }     # the files of a folder
    rows = "pairs.csv"                # optional, top level: a CSV whose columns are parameters;
                                      # each row is one value of the axis "row"

Paths are relative to the plan file's folder. The first axis varies slowest (a grid of the
first two axes has the first down, the second across). Each item has a stable key made of its
axis values (``seed=1,guidance=3``), so a batch can be resumed and its items found again.

:func:`load_plan` / :func:`parse_plan` give a :class:`BatchPlan` (``PlanError`` with a sentence
for anything wrong); :meth:`BatchPlan.check` validates every item against the tool's declared
parameters; :meth:`BatchPlan.to_dict` is the resolved plan (explicit value lists, absolute
paths) that a batch record keeps, so a resume does not depend on the plan file or the folder.
"""

from __future__ import annotations

import csv
import glob as _glob
import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

#: Plan keys at the top level.
TOP_KEYS = ("tool", "name", "device", "params", "sweep", "rows", "model", "seed")
#: How many items a plan may expand to (a typo in a range should not make a million runs).
MAX_ITEMS = 100_000
ROW_AXIS = "row"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class PlanError(ValueError):
    """A plan that cannot be used; ``str()`` is a sentence naming what is wrong."""


@dataclass(frozen=True)
class Axis:
    """One swept parameter (or ``row`` for CSV rows): its values and their short labels."""

    name: str
    values: tuple[Any, ...]
    labels: tuple[str, ...]
    kind: str = "values"  # values, range, seeds, files, rows

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "values": list(self.values), "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Axis:
        return cls(name=str(d["name"]), values=tuple(d["values"]), labels=tuple(str(x) for x in d["labels"]),
                   kind=str(d.get("kind", "values")))


@dataclass(frozen=True)
class BatchItem:
    """One run of a batch: ``params`` are the tool's values (fixed + this item's axis values),
    ``coords`` the axis labels by axis name, ``key`` the stable name of the item."""

    index: int
    key: str
    params: dict[str, Any]
    coords: dict[str, str]


@dataclass(frozen=True)
class BatchPlan:
    tool: str
    params: dict[str, Any] = field(default_factory=dict)
    axes: tuple[Axis, ...] = ()
    name: str = ""
    device: Optional[str] = None

    @property
    def count(self) -> int:
        return math.prod(len(a.values) for a in self.axes) if self.axes else 1

    @property
    def title(self) -> str:
        if self.name:
            return self.name
        swept = " x ".join(f"{a.name}" for a in self.axes)
        return f"{self.tool}" + (f": {swept}" if swept else "")

    def axis(self, name: str) -> Axis:
        for a in self.axes:
            if a.name == name:
                return a
        raise KeyError(name)

    def items(self) -> list[BatchItem]:
        """Every item, the first axis varying slowest."""
        if self.count > MAX_ITEMS:
            raise PlanError(f"the plan makes {self.count} items; at most {MAX_ITEMS} are allowed in one batch")
        out = []
        ranges = [range(len(a.values)) for a in self.axes]
        for index, combo in enumerate(itertools.product(*ranges)):
            params = dict(self.params)
            coords: dict[str, str] = {}
            for axis, i in zip(self.axes, combo):
                value = axis.values[i]
                if axis.kind == "rows":
                    params.update(value)
                else:
                    params[axis.name] = value
                coords[axis.name] = axis.labels[i]
            key = ",".join(f"{k}={v}" for k, v in coords.items()) or "item"
            out.append(BatchItem(index=index, key=key, params=params, coords=coords))
        return out

    # -- against the tool ---------------------------------------------------------------------
    def check(self, tool: Any) -> list[BatchItem]:
        """Validate the plan against ``tool`` (an ``app.api.ToolSpec``): every parameter it
        names exists and every item's values are valid. Returns the items; ``PlanError`` naming
        the first item and parameter that is wrong."""
        from app import api

        names = {p.name for p in tool.params}
        named = set(self.params) | {a.name for a in self.axes if a.kind != "rows"}
        for axis in self.axes:
            if axis.kind == "rows":
                for row in axis.values:
                    named |= set(row)
        unknown = sorted(named - names)
        if unknown:
            raise PlanError(f"the tool {tool.id!r} has no parameter {unknown[0]!r} "
                            f"(its parameters: {', '.join(p.name for p in tool.params)})")
        items = self.items()
        for item in items:
            try:
                tool.validate(item.params)
            except api.ParamError as exc:
                where = f"item {item.key}: " if item.coords else ""
                raise PlanError(f"{where}{exc}") from None
        return items

    # -- as a record ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "name": self.name, "device": self.device, "params": dict(self.params),
                "axes": [a.to_dict() for a in self.axes]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BatchPlan:
        """A plan from :meth:`to_dict` (as stored in a batch record)."""
        try:
            return cls(tool=str(d["tool"]), params=dict(d.get("params") or {}),
                       axes=tuple(Axis.from_dict(a) for a in d.get("axes") or ()),
                       name=str(d.get("name") or ""), device=d.get("device"))
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(f"the stored plan cannot be read: {exc}") from None

    def to_toml(self) -> str:
        """The plan as TOML (axes as explicit value lists; CSV rows inline as ``[[rows]]``)."""
        lines = [f"tool = {_toml_value(self.tool)}"]
        if self.name:
            lines.append(f"name = {_toml_value(self.name)}")
        if self.device:
            lines.append(f"device = {_toml_value(self.device)}")
        lines += ["", "[params]"] + [f"{k} = {_toml_value(v)}" for k, v in self.params.items()]
        plain = [a for a in self.axes if a.kind != "rows"]
        if plain:
            lines += ["", "[sweep]"] + [f"{a.name} = {_toml_value(list(a.values))}" for a in plain]
        for a in self.axes:
            if a.kind == "rows":
                for row in a.values:
                    lines += ["", "[[rows]]"] + [f"{k} = {_toml_value(v)}" for k, v in row.items()]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


def load_plan(path: str | os.PathLike) -> BatchPlan:
    """Read a TOML plan file (``PlanError`` for a missing or malformed file)."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"no plan file at {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"cannot read the plan {p}: {exc}") from None
    return parse_plan(text, base_dir=p.parent, source=str(p))


def parse_plan(text: str, base_dir: str | os.PathLike = ".", source: str = "the plan") -> BatchPlan:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{source} is not valid TOML: {exc}") from None
    return build_plan(data, base_dir)


def build_plan(data: Mapping[str, Any], base_dir: str | os.PathLike = ".") -> BatchPlan:
    """A plan from parsed TOML (or the dock's dict); paths relative to ``base_dir``."""
    base = Path(base_dir).expanduser().resolve()
    if not isinstance(data, Mapping):
        raise PlanError("a plan is a table of keys (tool, params, sweep...)")
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise PlanError(f"the plan has an unknown key {unknown[0]!r} (keys: {', '.join(TOP_KEYS)})")
    tool = data.get("tool")
    if not isinstance(tool, str) or not tool.strip():
        raise PlanError("the plan needs a tool: tool = \"text-to-image\" (see 'implicit-studio tools')")
    params = data.get("params", {})
    if not isinstance(params, Mapping):
        raise PlanError("[params] must be a table of parameter = value")
    params = dict(params)
    for key in ("model", "seed"):  # allowed at the top level as a shorthand
        if key in data:
            params[key] = data[key]
    name = data.get("name", "")
    device = data.get("device")
    if not isinstance(name, str):
        raise PlanError(f"name must be a text, got {name!r}")
    if device is not None and (not isinstance(device, str) or not device.strip()):
        raise PlanError(f"device must be a text (auto, cpu, cuda, cuda:N, mps), got {device!r}")
    sweep = data.get("sweep", {})
    if not isinstance(sweep, Mapping):
        raise PlanError("[sweep] must be a table of parameter = values")
    axes = [_axis(str(k), v, base) for k, v in sweep.items()]
    if "rows" in data:
        axes.append(_rows_axis(data["rows"], base))
    seen: set[str] = set()
    for a in axes:
        if a.name in params and a.kind != "rows":
            raise PlanError(f"{a.name!r} is both a fixed parameter and a swept one; keep one")
        if a.name in seen:
            raise PlanError(f"{a.name!r} is swept twice")
        seen.add(a.name)
    rows = next((a for a in axes if a.kind == "rows"), None)
    if rows is not None:
        clash = sorted({k for row in rows.values for k in row} & (set(params) | (seen - {ROW_AXIS})))
        if clash:
            raise PlanError(f"the rows set {clash[0]!r}, which the plan also fixes or sweeps; keep one")
    plan = BatchPlan(tool=tool.strip(), params=params, axes=tuple(axes), name=name, device=device)
    if plan.count > MAX_ITEMS:
        raise PlanError(f"the plan makes {plan.count} items; at most {MAX_ITEMS} are allowed in one batch")
    return plan


def _axis(name: str, spec: Any, base: Path) -> Axis:
    if name == ROW_AXIS:
        raise PlanError("'row' is the axis of CSV rows; give rows = \"file.csv\" at the top level")
    if isinstance(spec, list):
        if not spec:
            raise PlanError(f"sweep {name}: the list of values is empty")
        return Axis(name, tuple(spec), tuple(_label(v) for v in spec))
    if not isinstance(spec, Mapping):
        raise PlanError(f"sweep {name}: give a list of values, a range {{ start, stop, step }}, a seed list "
                        f"{{ seeds = N }}, or files {{ files = \"glob\" }} / {{ folder = \"dir\" }}; got {spec!r}")
    keys = set(spec)
    if keys & {"files", "folder"}:
        return _files_axis(name, spec, base)
    if "seeds" in keys:
        _only(name, spec, {"seeds", "start"})
        n, start = spec["seeds"], spec.get("start", 0)
        if not _is_int(n) or n < 1:
            raise PlanError(f"sweep {name}: seeds = N needs a whole number of seeds >= 1, got {n!r}")
        if not _is_int(start) or start < 0:
            raise PlanError(f"sweep {name}: start needs a whole number >= 0, got {start!r}")
        values = tuple(range(start, start + n))
        return Axis(name, values, tuple(str(v) for v in values), "seeds")
    if "start" in keys and "stop" in keys:
        return _range_axis(name, spec)
    raise PlanError(f"sweep {name}: a table needs start and stop (and step or num), seeds, files or folder; "
                    f"got keys {', '.join(sorted(keys))}")


def _only(name: str, spec: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(spec) - allowed)
    if extra:
        raise PlanError(f"sweep {name}: unknown key {extra[0]!r} (keys here: {', '.join(sorted(allowed))})")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _range_axis(name: str, spec: Mapping[str, Any]) -> Axis:
    _only(name, spec, {"start", "stop", "step", "num"})
    start, stop = spec["start"], spec["stop"]
    if not (_is_num(start) and _is_num(stop)):
        raise PlanError(f"sweep {name}: start and stop must be numbers, got {start!r} and {stop!r}")
    if ("step" in spec) == ("num" in spec):
        raise PlanError(f"sweep {name}: a range needs either step or num")
    if "num" in spec:
        num = spec["num"]
        if not _is_int(num) or num < 1:
            raise PlanError(f"sweep {name}: num must be a whole number >= 1, got {num!r}")
        if num == 1:
            values = [start]
        else:
            values = [start + (stop - start) * i / (num - 1) for i in range(num)]
        ints = _is_int(start) and _is_int(stop) and all(float(v).is_integer() for v in values)
    else:
        step = spec["step"]
        if not _is_num(step) or step == 0:
            raise PlanError(f"sweep {name}: step must be a number other than 0, got {step!r}")
        if (stop - start) * step < 0:
            raise PlanError(f"sweep {name}: a step of {step} never goes from {start} to {stop}")
        n = int(math.floor((stop - start) / step + 1e-9)) + 1
        if n > MAX_ITEMS:
            raise PlanError(f"sweep {name}: the range makes {n} values; at most {MAX_ITEMS} are allowed")
        values = [start + i * step for i in range(n)]
        ints = _is_int(start) and _is_int(step)
    values = [int(round(v)) for v in values] if ints else [round(float(v), 10) for v in values]
    return Axis(name, tuple(values), tuple(_label(v) for v in values), "range")


def _files_axis(name: str, spec: Mapping[str, Any], base: Path) -> Axis:
    if "files" in spec:
        _only(name, spec, {"files"})
        pattern = spec["files"]
        if not isinstance(pattern, str) or not pattern.strip():
            raise PlanError(f"sweep {name}: files = \"glob\" needs a pattern such as \"inputs/*.png\"")
        full = pattern if os.path.isabs(os.path.expanduser(pattern)) else str(base / pattern)
        found = sorted(p for p in _glob.glob(os.path.expanduser(full), recursive=True) if os.path.isfile(p))
        where = f"files matching {pattern!r}"
    else:
        _only(name, spec, {"folder", "pattern"})
        folder = spec["folder"]
        if not isinstance(folder, str) or not folder.strip():
            raise PlanError(f"sweep {name}: folder = \"dir\" needs a folder name")
        root = Path(folder).expanduser()
        root = root if root.is_absolute() else base / root
        if not root.is_dir():
            raise PlanError(f"sweep {name}: no folder {root}")
        pattern = spec.get("pattern")
        if pattern is not None and not isinstance(pattern, str):
            raise PlanError(f"sweep {name}: pattern must be a text such as \"*.png\"")
        if pattern:
            found = sorted(str(p) for p in root.glob(pattern) if p.is_file())
        else:
            found = sorted(str(p) for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        where = f"files in {root}" + (f" matching {pattern!r}" if pattern else " (images)")
    if not found:
        raise PlanError(f"sweep {name}: no {where}")
    values = tuple(str(Path(p).resolve()) for p in found)
    labels = _short_paths(values)
    return Axis(name, values, labels, "files")


def _short_paths(paths: Sequence[str]) -> tuple[str, ...]:
    """The shortest distinguishing labels: the file names, or paths below their common folder."""
    names = [Path(p).name for p in paths]
    if len(set(names)) == len(names):
        return tuple(names)
    common = os.path.commonpath(paths)
    return tuple(os.path.relpath(p, common) for p in paths)


def _rows_axis(spec: Any, base: Path) -> Axis:
    if isinstance(spec, str):
        path = Path(spec).expanduser()
        path = path if path.is_absolute() else base / path
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                rows = [{k.strip(): _csv_value(v) for k, v in r.items() if k is not None and k.strip()}
                        for r in reader]
        except FileNotFoundError:
            raise PlanError(f"rows: no CSV file at {path}") from None
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise PlanError(f"rows: cannot read {path}: {exc}") from None
        where = str(path)
    elif isinstance(spec, list) and all(isinstance(r, Mapping) for r in spec):
        rows = [dict(r) for r in spec]
        where = "[[rows]]"
    else:
        raise PlanError(f"rows must be a CSV file name or [[rows]] tables, got {spec!r}")
    if not rows:
        raise PlanError(f"rows: {where} has no rows")
    for i, r in enumerate(rows):
        if not r:
            raise PlanError(f"rows: row {i + 1} of {where} is empty")
    return Axis(ROW_AXIS, tuple(rows), tuple(str(i + 1) for i in range(len(rows))), "rows")


def _csv_value(text: Optional[str]) -> Any:
    """CSV cells are text; a cell that reads as a whole or decimal number is that number (the
    tool's parameter check gives the final word)."""
    if text is None:
        return ""
    t = text.strip()
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return text


def _label(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return v if len(v) <= 40 else v[:37] + "..."
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if v is None:
        raise PlanError("a plan value cannot be empty (TOML has no null); leave the parameter out")
    raise PlanError(f"a plan value must be a number, text, true/false or a list, got {type(v).__name__}")


def grid_axes(plan: BatchPlan) -> tuple[Optional[Axis], Optional[Axis]]:
    """The axes a result grid lays out: (down, across). With one axis it goes across; a swept
    seed goes across when there are two (seeds across, the other parameter down)."""
    axes = [a for a in plan.axes if len(a.values) > 1] or list(plan.axes)
    if not axes:
        return None, None
    if len(axes) == 1:
        return None, axes[0]
    seeds = [a for a in axes if a.kind == "seeds" or a.name == "seed"]
    across = seeds[0] if seeds else axes[1]
    down = next(a for a in axes if a is not across)
    return down, across


def sweep_spec_from_text(text: str) -> Any:
    """The sweep spec of one axis as the Batch dock's rows write it (``PlanError`` when empty):

    - ``1, 2, 3`` or ``red, "a, b"``: a list of values (numbers and true/false read as such);
    - ``0.2:0.8:0.2``: a range start:stop:step (stop included);
    - ``seeds 8`` or ``seeds 8 from 100``: a seed list;
    - ``files inputs/*.png`` / ``folder inputs``: input files.
    """
    t = (text or "").strip()
    if not t:
        raise PlanError("an axis needs values, e.g. 1, 2, 3 or 0.5:2:0.5 or seeds 8")
    low = t.lower()
    if low.startswith("files "):
        return {"files": t[6:].strip()}
    if low.startswith("folder "):
        return {"folder": t[7:].strip()}
    if low.startswith("seeds "):
        parts = low.split()
        try:
            n = int(parts[1])
            start = int(parts[3]) if len(parts) == 4 and parts[2] == "from" else 0
            if len(parts) not in (2, 4):
                raise ValueError
        except (ValueError, IndexError):
            raise PlanError(f"write a seed list as 'seeds 8' or 'seeds 8 from 100', not {t!r}") from None
        return {"seeds": n, "start": start}
    if t.count(":") == 2 and "," not in t:
        try:
            start, stop, step = (_number(x) for x in t.split(":"))
        except ValueError:
            raise PlanError(f"write a range as start:stop:step with numbers, not {t!r}") from None
        return {"start": start, "stop": stop, "step": step}
    return [_scalar(x) for x in next(csv.reader([t], skipinitialspace=True))]


def sweep_spec_to_text(spec: Any) -> str:
    """The inverse of :func:`sweep_spec_from_text` (for a plan loaded into the dock)."""
    if isinstance(spec, Mapping):
        if "files" in spec:
            return f"files {spec['files']}"
        if "folder" in spec:
            return f"folder {spec['folder']}"
        if "seeds" in spec:
            return f"seeds {spec['seeds']}" + (f" from {spec['start']}" if spec.get("start") else "")
        if "step" in spec:
            return f"{spec['start']}:{spec['stop']}:{spec['step']}"
    if isinstance(spec, (list, tuple)):
        return ", ".join(json.dumps(v) if isinstance(v, str) and ("," in v or v != v.strip()) else
                         ("true" if v is True else "false" if v is False else str(v)) for v in spec)
    return str(spec)


def _number(text: str) -> int | float:
    t = text.strip()
    try:
        return int(t)
    except ValueError:
        return float(t)


def _scalar(text: str) -> Any:
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    try:
        return _number(t)
    except ValueError:
        return t
