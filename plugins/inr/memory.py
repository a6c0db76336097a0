"""How much memory a render, a bake or a network may still take (standard library only)."""

from __future__ import annotations

import os


def available_memory() -> int:
    """Bytes of memory available now (Linux /proc/meminfo; sysconf elsewhere), no more than this
    process's address-space limit (``ulimit -v``) still allows."""
    free = None
    try:
        with open("/proc/meminfo") as fh:
            free = next((int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("MemAvailable:")), None)
    except OSError:
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = 8 * 1024**3
    return min(free, _address_space_left())


def _address_space_left() -> int:
    try:
        import resource

        cap = resource.getrlimit(resource.RLIMIT_AS)[0]
        if cap in (resource.RLIM_INFINITY, -1):
            return 1 << 62
        with open("/proc/self/status") as fh:
            used = next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmSize:"))
        return max(cap - used, 0)
    except (ImportError, OSError, ValueError, StopIteration):
        return 1 << 62
