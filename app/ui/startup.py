"""When did this process start? Used for ``first-paint-ms``.

Order of preference: ``IMPLICIT_STUDIO_T0`` (wall-clock seconds since the epoch, set by the
launcher as early as possible), ``app._start_time`` (set by ``app/__main__`` / the CLI), then the
kernel's record of the process start (``/proc/self/stat`` field 22, against ``CLOCK_BOOTTIME``), which includes
the interpreter's own start-up. No psutil.
"""

from __future__ import annotations

import os
import sys
import time


def _proc_start_epoch() -> float | None:
    try:
        with open("/proc/self/stat", "rb") as fh:
            stat = fh.read().decode()
        # the command name (field 2) may contain spaces; fields after it start at ')'
        rest = stat[stat.rindex(")") + 2:].split()
        start_ticks = int(rest[19])  # field 22 overall
        ticks = os.sysconf(os.sysconf_names["SC_CLK_TCK"])
        # the start is counted in clock ticks since boot; CLOCK_BOOTTIME is the same clock now
        # (the boot time in /proc/stat is rounded to whole seconds, too coarse for this)
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / ticks
        return time.time() - age
    except (OSError, ValueError, KeyError, IndexError, AttributeError):
        return None


def process_start_time() -> float:
    """Wall-clock time (``time.time()`` scale) at which this process started, as best known."""
    env = os.environ.get("IMPLICIT_STUDIO_T0")
    if env:
        try:
            return float(env)
        except ValueError:
            pass
    app_mod = sys.modules.get("app")
    t = getattr(app_mod, "_start_time", None)
    if isinstance(t, (int, float)) and t > 0:
        return float(t)
    t = _proc_start_epoch()
    if t is not None:
        return t
    return time.time() - time.perf_counter()  # last resort: perf_counter's zero is near start


def ms_since_start() -> float:
    return (time.time() - process_start_time()) * 1000.0
