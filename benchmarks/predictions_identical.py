"""Are the numbers identical, to the last bit, between two versions of arenajudge?

Runs one fixed pipeline of CLI commands twice, once with the source tree of a git revision
(checked out into a temporary worktree) and once with this working tree, and compares every
output: the probability files byte for byte, the JSON figures exactly. A refactor must leave
them identical; where it changes a number on purpose, the difference shows here.

The pipeline, on the bundled sample (3,000 human votes) and ../shared/data/human_dev.csv:
two CPU models trained and cross-validated on the sample, their predictions on both files,
an ensemble and a cascade of them (fitted on the OOF files), a model distilled from the
ensemble's OOF file, the evaluation and report numbers, cross-validation on human_dev, and
leaderboards (three tie models, bootstrap and style control) and win rates on
../shared/data/arena_bench_gpt4_pairs.csv.gz.

    python benchmarks/predictions_identical.py --against 1dd8da6 [--only NAME ...]
        [--save-before FILE | --before FILE]

Prints one JSON object: per output, "identical" or what differs; exit 1 when any differs.
The revision's side takes as long as this tree's (about 3.5 minutes on two idle cores):
--save-before runs only that side and writes its digests to FILE; --before FILE reuses
them (they name the commit they were made from, which must be --against's).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import data_file

REPO = Path(__file__).resolve().parents[1]

# (name, arguments, output files compared byte for byte, or "stdout" for a JSON stdout)
# {sample}, {human}, {bench} and {work} are filled in; every path is inside {work}.
PIPELINE: list[tuple[str, list[str], list[str]]] = [
    ("train_m1", ["train", "{sample}", "--out", "m1", "--format", "json"], ["stdout"]),
    (
        "train_m2",
        [
            "train",
            "{sample}",
            "--out",
            "m2",
            "--seed",
            "1",
            "--num-leaves",
            "15",
            "--format",
            "json",
        ],
        ["stdout"],
    ),
    ("cv_m1", ["cv", "{sample}", "--oof", "oof1.csv", "--format", "json"], ["stdout", "oof1.csv"]),
    (
        "cv_m2",
        [
            "cv",
            "{sample}",
            "--oof",
            "oof2.csv",
            "--seed",
            "1",
            "--num-leaves",
            "15",
            "--format",
            "json",
        ],
        ["stdout", "oof2.csv"],
    ),
    (
        "predict_sample",
        ["predict", "{sample}", "--model", "m1", "--out", "p_sample.csv"],
        ["p_sample.csv"],
    ),
    (
        "predict_human",
        ["predict", "{human}", "--model", "m1", "--out", "p_human.csv"],
        ["p_human.csv"],
    ),
    (
        "predict_human_tie_rate",
        ["predict", "{human}", "--model", "m2", "--tie-rate", "0.01", "--out", "p_human_tie.csv"],
        ["p_human_tie.csv"],
    ),
    (
        "ensemble",
        [
            "ensemble",
            "m1",
            "m2",
            "--oof",
            "oof1.csv",
            "--oof",
            "oof2.csv",
            "--data",
            "{sample}",
            "--out",
            "ens",
            "--write-oof",
            "ens_oof.csv",
            "--format",
            "json",
        ],
        ["stdout", "ens_oof.csv"],
    ),
    (
        "predict_ensemble",
        ["predict", "{human}", "--model", "ens", "--out", "p_ens.csv"],
        ["p_ens.csv"],
    ),
    (
        "cascade",
        [
            "cascade",
            "--first",
            "m2",
            "--then",
            "m1",
            "--share",
            "0.3",
            "--oof-first",
            "oof2.csv",
            "--oof-then",
            "oof1.csv",
            "--data",
            "{sample}",
            "--out",
            "cas",
            "--format",
            "json",
        ],
        ["stdout"],
    ),
    (
        "predict_cascade",
        ["predict", "{human}", "--model", "cas", "--out", "p_cas.csv"],
        ["p_cas.csv"],
    ),
    (
        "distil",
        ["train", "{sample}", "--teacher", "ens_oof.csv", "--out", "dist", "--format", "json"],
        ["stdout"],
    ),
    (
        "predict_distilled",
        ["predict", "{human}", "--model", "dist", "--out", "p_dist.csv"],
        ["p_dist.csv"],
    ),
    ("evaluate_human", ["evaluate", "{human}", "--model", "m1", "--format", "json"], ["stdout"]),
    (
        "report_oof",
        ["report", "{sample}", "--oof", "oof1.csv", "--out", "rep", "--format", "json"],
        ["rep/report.json"],
    ),
    (
        "cv_human",
        ["cv", "{human}", "--folds", "3", "--oof", "oof_human.csv", "--format", "json"],
        ["stdout", "oof_human.csv"],
    ),
    (
        "leaderboard_half",
        ["leaderboard", "{bench}", "--format", "json", "--ci", "sandwich"],
        ["stdout"],
    ),
    (
        "leaderboard_davidson",
        [
            "leaderboard",
            "{bench}",
            "--format",
            "json",
            "--ties",
            "davidson",
            "--ci",
            "bootstrap",
            "--bootstrap",
            "40",
        ],
        ["stdout"],
    ),
    (
        "leaderboard_rao_kupper",
        ["leaderboard", "{bench}", "--format", "json", "--ties", "rao-kupper", "--style-control"],
        ["stdout"],
    ),
    ("winrate", ["winrate", "{bench}", "--baseline", "gpt-4-0314", "--format", "json"], ["stdout"]),
]

# JSON keys whose values are paths, times or versions: they differ between two runs anyway
VOLATILE = {
    "seconds",
    "elapsed_s",
    "out",
    "model_dir",
    "path",
    "created",
    "version",
    "arenajudge_version",
    "written",
    "data",
    "files",
    "timestamp",
}


def _stable(value: object) -> object:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    if isinstance(value, str) and ("/" in value or "\\" in value):
        return Path(value).name  # a path: the same file, in another temporary folder
    return value


def _digest(work: Path, output: str, stdout: str) -> str:
    if output == "stdout":
        text = json.dumps(_stable(json.loads(stdout)), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()
    path = work / output
    if path.suffix == ".json":
        text = json.dumps(_stable(json.loads(path.read_text())), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_pipeline(src: Path, work: Path, steps: list[str]) -> dict[str, dict[str, str]]:
    """Run the pipeline with the package at SRC; the digest of every output, by step."""
    from arenajudge.datasets import sample_path  # the bundled sample of this working tree

    fill = {
        "sample": str(sample_path()),
        "human": str(data_file("human_dev.csv")),
        "bench": str(data_file("arena_bench_gpt4_pairs.csv.gz")),
    }
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0"}
    digests: dict[str, dict[str, str]] = {}
    for name, arguments, outputs in PIPELINE:
        if name not in steps:
            continue
        command = [sys.executable, "-m", "arenajudge", *(a.format(**fill) for a in arguments)]
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            digests[name] = {
                "error": done.stderr.strip().splitlines()[-1:][0]
                if done.stderr.strip()
                else f"exit {done.returncode}"
            }
            continue
        digests[name] = {o: _digest(work, o, done.stdout) for o in outputs}
    return digests


def _run_revision(commit: str, tmp_path: Path, steps: list[str]) -> dict[str, dict[str, str]]:
    """The pipeline's digests with the source tree of COMMIT, in a temporary worktree."""
    tree = tmp_path / "tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(tree), commit],
        check=True,
    )
    try:
        (tmp_path / "before").mkdir()
        return run_pipeline(tree / "src", tmp_path / "before", steps)
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[p[0] for p in PIPELINE],
        help="run only these steps (and the ones before them)",
    )
    parser.add_argument(
        "--save-before",
        type=Path,
        metavar="FILE",
        help="run only the revision's side and write its digests to FILE",
    )
    parser.add_argument(
        "--before",
        type=Path,
        metavar="FILE",
        help="the revision's digests from an earlier --save-before",
    )
    args = parser.parse_args()
    steps = [p[0] for p in PIPELINE]
    if args.only:
        steps = steps[: max(steps.index(s) for s in args.only) + 1]
    started = time.perf_counter()
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", args.against],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="arenajudge-identical-") as tmp:
        tmp_path = Path(tmp)
        if args.before:
            saved = json.loads(args.before.read_text())
            if saved["commit"] != commit:
                sys.exit(f"error: {args.before}: digests of {saved['commit']}, not {commit}")
            before = saved["digests"]
        else:
            before = _run_revision(commit, tmp_path, steps)
            if args.save_before:  # the revision's side only: compare later with --before
                args.save_before.write_text(json.dumps({"commit": commit, "digests": before}))
                print(json.dumps({"saved": str(args.save_before), "commit": commit}))
                return
        (tmp_path / "after").mkdir()
        after = run_pipeline(REPO / "src", tmp_path / "after", steps)
    result: dict[str, object] = {}
    for name in steps:
        if name not in before:
            result[name] = "not in the saved digests"
        elif "error" in before[name] or "error" in after[name]:
            result[name] = {"before": before[name], "after": after[name]}
        elif before[name] == after[name]:
            result[name] = "identical"
        else:
            result[name] = {
                o: "differs" for o in before[name] if before[name][o] != after[name].get(o)
            }
    identical = all(v == "identical" for v in result.values())
    summary = {
        "against": commit,
        "identical": identical,
        "steps": result,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary, indent=2))
    sys.exit(0 if identical else 1)


if __name__ == "__main__":
    main()
