"""AlpacaEval's own length-controlled (LC) win rates, computed offline with the real package.

This runs in a separate virtual environment, never in the project's one (it must not import
``arenajudge``)::

    python3 -m venv /work/aevenv
    /work/aevenv/bin/pip install alpaca_eval==0.6.6 "scikit-learn==1.9.1"

scikit-learn: 1.9 sorts groups stably in ``GroupKFold`` (earlier versions use numpy's unstable
argsort, so with all groups tied the CV folds, the chosen C and the LC win rate shift by up to
~0.4 points with the numpy build); 1.10 removes ``penalty=``, which alpaca_eval 0.6.6 passes.

Why the monkeypatch: ``alpaca_eval.metrics.glm_winrate._get_featurized_data`` downloads
``df_gamed.csv`` from the Hugging Face hub (dataset ``tatsu-lab/alpaca_eval``) through
``hf_hub_download`` to get each instruction's ``instruction_difficulty`` (and, for
``length_controlled_v1`` only, annotations of two "gamed" baselines used as a regulariser). We
have no network and want to pass our own difficulty, so ``hf_hub_download`` is replaced by a
function returning a CSV written here with one row per instruction (columns ``index``,
``instruction_difficulty``, ``model``). The package looks difficulty up by *row position* of
that CSV (``df_gamed.drop_duplicates("index")["instruction_difficulty"][index]``), so rows are
written in order 0..K-1 and the annotations' ``index`` is remapped to those positions. Only GLMs
without the gamed-baseline regulariser (``length_controlled_noreg``,
``length_controlled_minimal``) are supported: ``length_controlled_v1`` needs the hub's gamed rows.

CLI (run from the other venv as a subprocess; prints nothing but errors)::

    /work/aevenv/bin/python benchmarks/alpaca_eval_reference.py IN.parquet DIFFICULTY.csv OUT.json \
        [--glm length_controlled_noreg]

``IN`` is a parquet (or JSON lines, ``.jsonl``) file with columns ``instruction, output_1,
output_2, generator_1, generator_2, preference, index``; ``DIFFICULTY.csv`` has columns
``index, instruction_difficulty``. ``OUT.json`` is ``{"models": {name: metrics}, "seconds": s}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd

METRIC_KEYS = (
    "win_rate",
    "standard_error",
    "discrete_win_rate",
    "length_controlled_winrate",
    "lc_standard_error",
)


def alpaca_eval_lc(
    annotations: pd.DataFrame, difficulty: pd.Series, glm_name: str = "length_controlled_noreg"
) -> dict[str, dict[str, float]]:
    """AlpacaEval's (v0.6.6) win rate and LC win rate per model, with its own code.

    annotations: columns instruction, output_1 (baseline output), output_2 (model output),
    generator_1 (baseline name), generator_2 (model name), preference (float in [1, 2]: 1 baseline
    wins, 2 model wins, 1.5 draw), index (int instruction index into ``difficulty``).
    difficulty: ``pd.Series`` of instruction difficulty indexed by that instruction index.

    Returns ``{model: {"win_rate", "standard_error", "discrete_win_rate",
    "length_controlled_winrate", "lc_standard_error", "seconds"}}`` (percentages, like AlpacaEval),
    from one ``get_length_controlled_winrate`` call per model, as ``alpaca_eval`` does.
    """
    from alpaca_eval.metrics import glm_winrate
    from sklearn.exceptions import ConvergenceWarning

    info = glm_winrate.GLM_INFO[glm_name]
    if info["regularize_to_baseline_lambda"]:
        raise ValueError(
            f"{glm_name} needs the hub's gamed-baseline annotations; use a *_noreg GLM"
        )
    difficulty = difficulty.sort_index()
    position = pd.Series(range(len(difficulty)), index=difficulty.index)
    missing = set(annotations["index"]) - set(difficulty.index)
    if missing:
        raise KeyError(
            f"{len(missing)} annotation indices have no difficulty, e.g. {sorted(missing)[:5]}"
        )
    df = annotations.copy()
    df["index"] = df["index"].map(position).astype(int)
    df["preference"] = df["preference"].astype(float)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # sklearn deprecations inside alpaca_eval, and liblinear non-convergence on extreme models
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        gamed_csv = Path(tmp) / "df_gamed.csv"
        pd.DataFrame(
            {
                "index": range(len(difficulty)),
                "instruction_difficulty": difficulty.to_numpy(dtype=float),
                "model": "none",
                "not_gamed_baseline": True,
            }
        ).to_csv(gamed_csv, index=False)
        with mock.patch.object(glm_winrate, "hf_hub_download", lambda *a, **k: str(gamed_csv)):
            for model, sub in df.groupby("generator_2", sort=True):
                start = time.perf_counter()
                metrics = glm_winrate.get_length_controlled_winrate(
                    sub.reset_index(drop=True),
                    glm_name=glm_name,
                    save_weights_dir=None,
                    is_add_glm_preference_inplace=False,
                )
                out = {k: float(metrics[k]) for k in METRIC_KEYS}
                out["seconds"] = time.perf_counter() - start
                results[str(model)] = out
    return results


def _read_annotations(path: str) -> pd.DataFrame:
    if path.endswith((".jsonl", ".json")):
        return pd.read_json(path, lines=path.endswith(".jsonl"))
    return pd.read_parquet(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("annotations", help="parquet or .jsonl annotations")
    parser.add_argument("difficulty", help="CSV with columns index,instruction_difficulty")
    parser.add_argument("out", help="output JSON path")
    parser.add_argument("--glm", default="length_controlled_noreg")
    args = parser.parse_args(argv)
    logging.disable(
        logging.WARNING
    )  # alpaca_eval warns on large LC changes; keep stdout/stderr clean
    start = time.perf_counter()
    annotations = _read_annotations(args.annotations)
    diff = pd.read_csv(args.difficulty).set_index("index")["instruction_difficulty"]
    models = alpaca_eval_lc(annotations, diff, glm_name=args.glm)
    payload: dict[str, Any] = {
        "glm_name": args.glm,
        "models": models,
        "seconds": time.perf_counter() - start,
    }
    Path(args.out).write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
