"""GPU self-check: tiny random models through every GPU path of the transformer backends.

On whatever CUDA GPU is present: fp32/bf16/fp16 training and prediction, 8-bit and
4-bit loading (when bitsandbytes is installed), gradient checkpointing (with 4-bit
weights: QLoRA), 2-process DDP training when 2 GPUs exist, and 2-GPU prediction
compared with 1-GPU prediction. Prints one JSON object of what passed; a check that
fails records its error and the others still run. On a machine without a CUDA GPU it
says so and exits 0.

    python benchmarks/gpu_check.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny models the tests train, built the same way


def _run(check: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = check() or {}
        result: dict[str, Any] = {"passed": not detail.get("skipped"), **detail}
    except Exception as exc:  # a self-check reports every failure and goes on
        result = {"passed": False, "error": f"{type(exc).__name__}: {exc}",
                  "where": traceback.format_exc(limit=-2).splitlines()[-3:]}
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def _launch(n: int, *args: str) -> subprocess.CompletedProcess:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                           "--num_processes", str(n), "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no",
                           "--main_process_port", str(port), *args],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def main() -> None:
    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"gpu": None, "cuda": False, "torch": torch.__version__,
                          "message": "no CUDA GPU is visible: nothing to check here; run "
                                     "this on a GPU machine"}))
        return
    import numpy as np

    from arenajudge.models.registry import build_model, load_model
    from arenajudge.models.transformer import devices
    from tiny import FAST, make_battles, tiny_bases

    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    bases = tiny_bases(work / "bases")
    battles = make_battles(40)
    options = {**FAST, "device": "cuda"}

    def train(kind: str, **extra: Any) -> dict[str, Any]:
        model = build_model(kind, {**options, "base": str(bases[
            {"siamese": "deberta-v2", "cross": "bert", "llm": "llama"}[kind]]),
            "max_steps": 3, **extra}).fit(battles)
        proba = model.predict_proba(battles)
        if not np.isfinite(proba).all():
            raise AssertionError("non-finite probabilities")
        weight = next(model.net_.body.parameters())
        return {"body_dtype": str(weight.dtype), "body_device": str(weight.device)}

    checks: dict[str, Callable[[], dict[str, Any] | None]] = {}
    for precision in ("fp32", "bf16", "fp16", "auto"):
        checks[f"llm_{precision}"] = lambda p=precision: train("llm", precision=p)
    checks["siamese_auto"] = lambda: train("siamese")
    checks["cross_lora"] = lambda: train("cross", lora=True)
    checks["llm_gradient_checkpointing"] = lambda: train("llm", gradient_checkpointing=True)
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    for bits in ("8bit", "4bit"):
        checks[f"llm_load_in_{bits}"] = (
            (lambda b=bits: train("llm", load_in=b)) if has_bnb
            else lambda: {"skipped": "bitsandbytes is not installed"})
    checks["qlora_gradient_checkpointing"] = (
        (lambda: train("llm", load_in="4bit", gradient_checkpointing=True)) if has_bnb
        else lambda: {"skipped": "bitsandbytes is not installed"})

    data = work / "data.csv"

    def write_data() -> None:
        import pandas as pd

        pd.DataFrame({"id": battles.id, **{
            name: [json.dumps(list(turns)) for turns in getattr(battles, name)]
            for name in ("prompt", "response_a", "response_b")},
            **dict(zip(("winner_model_a", "winner_model_b", "winner_tie"), battles.target.T))
        }).to_csv(data, index=False)

    def ddp_train() -> dict[str, Any]:
        if torch.cuda.device_count() < 2:
            return {"skipped": "fewer than 2 GPUs"}
        write_data()
        run = _launch(2, "-m", "arenajudge", "train", str(data), "--out", str(work / "ddp"),
                      "--backend", "siamese", "--base", str(bases["bert"]), "--max-length",
                      "64", "--max-steps", "4", "--val-fraction", "0.25", "--force")
        if run.returncode:
            raise RuntimeError(run.stderr[-1500:])
        return {"steps": json.loads((work / "ddp" / "manifest.json").read_text())[
            "metrics"]["validation"]["steps"]}

    def two_gpu_predict() -> dict[str, Any]:
        if torch.cuda.device_count() < 2:
            return {"skipped": "fewer than 2 GPUs"}
        write_data()
        model = build_model("llm", {**options, "base": str(bases["llama"]), "max_steps": 2})
        model.fit(battles).save(work / "llm", force=True)
        one = load_model(work / "llm").predict_proba(battles)
        run = _launch(2, "-m", "arenajudge", "predict", str(data), "--model",
                      str(work / "llm"), "--out", str(work / "two.csv"), "--force")
        if run.returncode:
            raise RuntimeError(run.stderr[-1500:])
        import pandas as pd

        two = pd.read_csv(work / "two.csv").iloc[:, 1:].to_numpy()
        difference = float(np.abs(two - one).max())
        if difference > 1e-5:
            raise AssertionError(f"2-GPU predictions differ from 1-GPU by {difference}")
        return {"max_abs_difference": difference}

    checks["ddp_train_2_gpus"] = ddp_train
    checks["predict_2_gpus"] = two_gpu_predict
    results = {name: _run(check) for name, check in checks.items()}
    print(json.dumps({
        "gpu": torch.cuda.get_device_name(), "capability": list(torch.cuda.get_device_capability()),
        "gpus": torch.cuda.device_count(), "native_bf16": devices.has_native_bf16(),
        "torch": torch.__version__, "bitsandbytes": has_bnb,
        "passed": sum(r["passed"] for r in results.values()),
        "failed": [n for n, r in results.items() if not r["passed"] and "skipped" not in r],
        "checks": results}))


if __name__ == "__main__":
    main()
