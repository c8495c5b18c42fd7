"""How many threads "all cores" means here."""

from __future__ import annotations

import os


def resolve_jobs(n_jobs: int) -> int:
    """``n_jobs`` threads, where 0 means what OpenMP (and so LightGBM) would use:
    ``OMP_NUM_THREADS`` when set (Ray sets it per worker), else the usable cores."""
    if n_jobs > 0:
        return n_jobs
    configured = os.environ.get("OMP_NUM_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
