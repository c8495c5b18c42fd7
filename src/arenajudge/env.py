"""What a bug report needs to know about this machine: versions, cores, GPUs.

Package versions come from the installed distributions' metadata, so nothing heavy is
imported to find them; torch is imported only when it is installed, to list the GPUs.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

from arenajudge import __version__

CORE_PACKAGES = ("numpy", "pandas", "pyarrow", "scikit-learn", "lightgbm", "wordllama")
OPTIONAL_PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "bitsandbytes",
    "gguf",
    "fastapi",
    "uvicorn",
    "ray",
    "matplotlib",
)


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _usable_cores() -> int | None:
    if hasattr(os, "sched_getaffinity"):  # the cores this process may run on (Linux)
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def gpu_environment() -> dict[str, Any] | None:
    """CUDA and each GPU's name, compute capability, memory and bf16 support.

    None when torch is not installed (torch is then never imported); ``error`` holds
    the reason when torch is installed but cannot be imported.
    """
    version = installed_version("torch")
    if version is None:
        return None
    try:
        import torch
    except Exception as exc:  # a broken install is what a bug report must show
        return {"torch": version, "error": f"{type(exc).__name__}: {exc}"}
    # the threshold `--precision auto` uses, so `env` and training agree on a card's bf16
    from arenajudge.models.transformer.devices import BF16_CAPABILITY

    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            major, minor = props.major, props.minor
            gpus.append(
                {
                    "index": index,
                    "name": props.name,
                    "compute_capability": f"{major}.{minor}",
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "bf16": (major, minor) >= BF16_CAPABILITY,
                }
            )
    return {
        "torch": version,
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "gpus": gpus,
    }


def collect_environment() -> dict[str, Any]:
    """Everything ``arenajudge env`` prints, as a JSON-ready dict.

    Keys: ``arenajudge``, ``python``, ``platform``, ``cpu_count`` (logical CPUs),
    ``usable_cores``, ``core_packages`` and ``optional_packages`` (name → version, or
    None when not installed) and ``gpu`` (see :func:`gpu_environment`).
    """
    return {
        "arenajudge": __version__,
        "python": f"{sys.version.split()[0]} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "core_packages": {name: installed_version(name) for name in CORE_PACKAGES},
        "optional_packages": {name: installed_version(name) for name in OPTIONAL_PACKAGES},
        "gpu": gpu_environment(),
    }
