"""`arenajudge env`: what a bug report needs, and never a crash when a stack is missing."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from arenajudge import env
from arenajudge.cli import main

KEYS = {
    "arenajudge",
    "python",
    "platform",
    "cpu_count",
    "usable_cores",
    "core_packages",
    "optional_packages",
    "gpu",
}


def run_env(*args):
    return CliRunner().invoke(main, ["env", *args])


def hide_torch(monkeypatch, installed: bool) -> None:
    """Make torch unimportable; with ``installed`` its metadata still says it is there."""
    real_version = metadata.version

    def version(name: str) -> str:
        if name != "torch":
            return real_version(name)
        if installed:
            return "2.0.0"
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", version)
    # `import torch` now raises ImportError: the code must not try it when torch is absent
    monkeypatch.setitem(sys.modules, "torch", None)


def test_env_json_has_every_key_and_every_stack():
    result = run_env("--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == KEYS
    assert set(report["core_packages"]) == {
        "numpy",
        "pandas",
        "pyarrow",
        "scikit-learn",
        "lightgbm",
        "wordllama",
    }
    assert set(report["optional_packages"]) >= {
        "torch",
        "transformers",
        "peft",
        "accelerate",
        "bitsandbytes",
        "fastapi",
        "uvicorn",
        "ray",
        "matplotlib",
    }
    assert report["core_packages"]["numpy"] == metadata.version("numpy")
    assert report["cpu_count"] >= 1 and report["python"].startswith(
        ".".join(map(str, sys.version_info[:2]))
    )


def test_env_without_torch_never_imports_it_and_says_so(monkeypatch):
    hide_torch(monkeypatch, installed=False)
    assert env.collect_environment()["gpu"] is None
    result = run_env()
    assert result.exit_code == 0, result.output
    assert "- torch: not installed" in result.stdout
    assert "torch is not installed" in result.stdout


def test_env_reports_a_broken_torch_instead_of_crashing(monkeypatch):
    hide_torch(monkeypatch, installed=True)
    gpu = env.collect_environment()["gpu"]
    assert gpu["torch"] == "2.0.0" and "import of torch halted" in gpu["error"]
    result = run_env()
    assert result.exit_code == 0 and "cannot be imported" in result.stdout


def test_env_lists_each_gpu_with_capability_memory_and_native_bf16(monkeypatch):
    """A T4 (sm75) emulates bf16 only; an A100 (sm80) computes it in hardware."""
    torch = pytest.importorskip("torch", reason="the transformers extra (torch) is absent")
    cards = [
        SimpleNamespace(name="Tesla T4", major=7, minor=5, total_memory=16 * 2**30),
        SimpleNamespace(name="A100-SXM4-80GB", major=8, minor=0, total_memory=80 * 2**30),
    ]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(cards))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: cards[index])
    gpu = env.gpu_environment()
    assert gpu["cuda_available"] is True
    assert gpu["gpus"] == [
        {
            "index": 0,
            "name": "Tesla T4",
            "compute_capability": "7.5",
            "memory_gib": 16.0,
            "bf16": False,
        },
        {
            "index": 1,
            "name": "A100-SXM4-80GB",
            "compute_capability": "8.0",
            "memory_gib": 80.0,
            "bf16": True,
        },
    ]


def test_env_lists_no_gpu_when_cuda_is_unavailable(monkeypatch):
    torch = pytest.importorskip("torch", reason="the transformers extra (torch) is absent")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    gpu = env.gpu_environment()
    assert gpu["cuda_available"] is False and gpu["gpus"] == []
