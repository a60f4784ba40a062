"""Peak resident memory of one stretch of work, such as a cell, in a process that runs several.

Why: a comparison runs its cells one after another in one process, so the process's lifetime peak (getrusage)
says nothing about the cell that set it. Linux keeps the peak as ``VmHWM`` and resets it on request
(``/proc/self/clear_refs``), which gives each cell its own peak. Elsewhere the peak is unknown (None).
"""

from __future__ import annotations

from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
RESET_PEAK = "5"  # clear_refs: reset the peak resident set size to the current one


def reset_peak_rss() -> None:
    """Start measuring a new peak from what is resident now."""
    try:
        CLEAR_REFS.write_text(RESET_PEAK)
    except OSError:
        pass


def peak_rss_gb() -> float | None:
    """The largest resident set since the last reset (or since the process started), in GB."""
    try:
        lines = STATUS.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    return None
