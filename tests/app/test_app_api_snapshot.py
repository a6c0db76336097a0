"""API stability: the public names and signatures of ``app.api`` and the hookspecs are pinned in
``api_snapshot.json``. Changing them fails this test until the snapshot is regenerated *and*
``API_VERSION`` is raised (minor for additions, major for removals or changes):

    .venv/bin/python tests/app/test_app_api_snapshot.py --update
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("api_snapshot.json")


def _sig(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(?)"


def _describe_class(cls) -> dict:
    out: dict = {"kind": "class", "bases": [b.__name__ for b in cls.__bases__]}
    if dataclasses.is_dataclass(cls):
        params = getattr(cls, "__dataclass_params__", None)
        out["frozen"] = bool(params and params.frozen)
        fields = []
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = repr(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = "<factory>"
            else:
                default = "<required>"
            fields.append([f.name, str(f.type), default])
        out["fields"] = fields
        classvars = {k: repr(v) for k, v in vars(cls).items() if k in ("kind", "type_name", "result_kind")}
        if classvars:
            out["classvars"] = classvars
    else:
        out["init"] = _sig(cls.__init__)
    members = {}
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            members[name] = "property"
        elif isinstance(value, staticmethod):
            members[name] = "staticmethod" + _sig(value.__func__)
        elif isinstance(value, classmethod):
            members[name] = "classmethod" + _sig(value.__func__)
        elif inspect.isfunction(value):
            members[name] = _sig(value)
    out["members"] = members
    return out


def build_snapshot() -> dict:
    from app import api, hookspecs

    names = {}
    for name in sorted(api.__all__):
        obj = getattr(api, name)
        if inspect.isclass(obj):
            names[name] = _describe_class(obj)
        elif inspect.isfunction(obj):
            names[name] = {"kind": "function", "signature": _sig(obj)}
        elif name == "API_VERSION":
            names[name] = {"kind": "constant"}  # its value is checked separately
        else:
            names[name] = {"kind": "constant", "value": repr(obj) if isinstance(obj, (str, int, tuple)) else type(obj).__name__}
    hooks = {}
    for name in sorted(hookspecs.__all__):
        fn = getattr(hookspecs, name)
        if name.startswith("studio_"):
            opts = getattr(fn, "implicit_studio_spec", {}) or {}
            hooks[name] = {"signature": _sig(fn), "firstresult": bool(opts.get("firstresult")),
                           "historic": bool(opts.get("historic"))}
    return {"api_version": api.API_VERSION, "api": names, "hookspecs": hooks}


def _surface(snap: dict) -> dict:
    return {k: v for k, v in snap.items() if k != "api_version"}


def test_public_api_matches_snapshot():
    assert SNAPSHOT.exists(), f"missing {SNAPSHOT}; create it with: python {__file__} --update"
    saved = json.loads(SNAPSHOT.read_text())
    current = build_snapshot()
    if _surface(saved) != _surface(current):
        diff = "\n".join(difflib.unified_diff(
            json.dumps(_surface(saved), indent=1, sort_keys=True).splitlines(),
            json.dumps(_surface(current), indent=1, sort_keys=True).splitlines(),
            "api_snapshot.json", "app/api.py + app/hookspecs.py", lineterm="", n=1))
        raise AssertionError(
            "The public plugin API changed. If on purpose: raise API_VERSION in app/api.py (minor for "
            "additions, major for removals/changes) and run "
            f"'python {Path(__file__).relative_to(Path.cwd()) if Path(__file__).is_relative_to(Path.cwd()) else __file__} --update'.\n"
            + diff)
    assert saved["api_version"] == current["api_version"], (
        "API_VERSION changed but the snapshot was not regenerated (run this file with --update)")


def test_every_hook_is_documented_with_version():
    from app import hookspecs

    for name in hookspecs.__all__:
        if name.startswith("studio_"):
            doc = getattr(hookspecs, name).__doc__ or ""
            assert "Added in API" in doc and len(doc.split()) > 15, name


def update() -> int:
    current = build_snapshot()
    if SNAPSHOT.exists():
        saved = json.loads(SNAPSHOT.read_text())
        if _surface(saved) != _surface(current) and saved["api_version"] == current["api_version"]:
            print("the API surface changed but API_VERSION did not; raise API_VERSION in app/api.py first",
                  file=sys.stderr)
            return 1
    SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    if "--update" in sys.argv:
        sys.exit(update())
    print(json.dumps(build_snapshot(), indent=1, sort_keys=True))


def test_snapshot_notices_an_added_or_changed_name(monkeypatch):
    from app import api

    base = _surface(build_snapshot())
    monkeypatch.setattr(api, "__all__", [*api.__all__, "new_helper"], raising=True)
    monkeypatch.setattr(api, "new_helper", lambda x: x, raising=False)
    assert _surface(build_snapshot()) != base
    monkeypatch.undo()
    monkeypatch.setattr(api.RunContext, "progress", lambda self, step: None)
    assert _surface(build_snapshot()) != base
