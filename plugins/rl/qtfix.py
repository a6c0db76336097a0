"""Work-around for a reference-count bug of PySide6 6.12 on Python < 3.12 (no Qt import here).

Measured in this project's venv (PySide6 6.12.0, Python 3.11): every call from Qt into a Python
override of a virtual method (``QGraphicsItem.paint``, ``boundingRect``, ...) drops one reference
to ``None`` (and other calls drop references to ``True``/``False``) that it never took. pyqtgraph
overrides these everywhere, so after a few thousand paints the interpreter aborts with
``Fatal Python error: none_dealloc`` (or ``bool_dealloc`` at exit). PySide6 6.11.3 does not
leak (same test: 0 references lost for 1,000 paints). The real fix is pinning ``pyside6<6.12``;
until then :func:`protect_singletons` raises the reference counts of ``None``, ``True`` and
``False`` far above anything the leak can consume in a session. Python 3.12+ makes these objects
immortal, so there it does nothing; it also does nothing on PySide6 versions without the bug.
"""

from __future__ import annotations

import sys

_FLOOR = 10**8
_TARGET = 10**9


def affected() -> bool:
    """True on the PySide6 6.12 + CPython < 3.12 combination that leaks references."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    mod = sys.modules.get("PySide6")
    if mod is None:
        return False
    ver = getattr(mod, "__version_info__", (0, 0))
    return tuple(ver[:2]) == (6, 12)


def protect_singletons() -> bool:
    """Top up the reference counts of None/True/False if they ran low; True if it did anything."""
    if not affected():
        return False
    import ctypes

    changed = False
    for obj in (None, True, False):
        if sys.getrefcount(obj) < _FLOOR:
            cell = ctypes.c_ssize_t.from_address(id(obj))  # ob_refcnt is the first field of PyObject
            cell.value += _TARGET - sys.getrefcount(obj)
            changed = True
    return changed
