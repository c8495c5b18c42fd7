"""Win rates against a baseline on AlpacaEval 2.0's annotations, checked against AlpacaEval.

On ``alpaca_eval_gpt4_turbo.csv.gz`` (57 models against ``gpt4_1106_preview``, GPT-4-
turbo's annotations) prints one JSON object with:

* ``discrete``: our discrete win rates against the ``discrete_win_rate`` column of the
  leaderboard CSV that the ``alpaca_eval`` wheel ships (models in common, max |diff|);
* ``lc``: our LC win rates beside ``alpaca_eval.metrics.glm_winrate.
  get_length_controlled_winrate`` on the same annotations and the same instruction
  difficulty (ours, handed to it: the package downloads its own from a hub), run in
  the venv given by ``--reference-python`` (``benchmarks/alpaca_eval_reference.py``);
  both timed in the same run; and the rank correlation of ours with the CSV's
  ``length_controlled_winrate``;
* ``leave_models_out``: the default CPU judge trained on the annotations of all models
  but a held-out fifth (five groups, each model held out once) predicts each held-out
  model's win rate and LC win rate from its outputs alone: Spearman and mean absolute
  error (points) over the 57 models, beside a length-only predictor; for the default
  judge and for it calibrated for unseen models (``--fold-groups model``);
* ``ppi``: with ``--votes-per-model`` voted pairs of each held-out model, the coverage
  of the true win rate by the prediction-powered 95% interval over ``--repeats``
  draws, and its width against the votes alone.

    python -m venv /tmp/ae && /tmp/ae/bin/pip install alpaca_eval==0.6.6
    python benchmarks/winrate.py --reference-python /tmp/ae/bin/python [--cache DIR]

Without ``--reference-python`` the AlpacaEval side is skipped. ``--cache DIR`` keeps
the leave-models-out predictions (five trainings per judge, about 10 minutes each on 2
cores); ``--judges`` with no name runs the votes side only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import spearmanr

from _common import data_file
from arenajudge.data import read_battles
from arenajudge.leaderboard.intervals import Z
from arenajudge.leaderboard.ppi import ppi_mean
from arenajudge.models.gbdt import GBDTModel
from arenajudge.winrate import baseline_pairs, win_rates
from arenajudge.winrate.glm import fit_logistic, lc_design, length_controlled_ppi

BASELINE = "gpt4_1106_preview"
LEADERBOARD = "leaderboards/data_AlpacaEval_2/weighted_alpaca_eval_gpt4_turbo_leaderboard.csv"
REFERENCE = Path(__file__).with_name("alpaca_eval_reference.py")


def _round(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def reference_side(
    battles, ours: pd.DataFrame, difficulty: pd.Series, python: str, glm: str
) -> dict:
    """AlpacaEval's own code on the same annotations and difficulty, in its venv."""
    where = "import alpaca_eval, os; print(os.path.dirname(alpaca_eval.__file__))"
    package = subprocess.run(
        [python, "-c", where], capture_output=True, text=True, check=True
    ).stdout.strip()
    board = pd.read_csv(Path(package) / LEADERBOARD, index_col=0)
    pairs = baseline_pairs(battles, BASELINE)
    code = {text: k for k, text in enumerate(difficulty.index)}
    annotations = pd.DataFrame(
        {
            "instruction": pairs.instruction,
            "generator_1": BASELINE,
            "generator_2": pairs.model,
            "preference": 1 + pairs.share,
            "index": [code[text] for text in pairs.instruction],
            # only the lengths of the outputs matter to the GLM
            "output_1": ["x" * int(n) for n in pairs.baseline_length],
            "output_2": ["x" * int(n) for n in pairs.model_length],
        }
    )
    with tempfile.TemporaryDirectory() as folder:
        folder_path = Path(folder)
        annotations.to_parquet(folder_path / "annotations.parquet")
        pd.DataFrame(
            {"index": range(len(difficulty)), "instruction_difficulty": difficulty.to_numpy()}
        ).to_csv(folder_path / "difficulty.csv", index=False)
        started = time.perf_counter()
        subprocess.run(
            [
                python,
                str(REFERENCE),
                str(folder_path / "annotations.parquet"),
                str(folder_path / "difficulty.csv"),
                str(folder_path / "out.json"),
                "--glm",
                glm,
            ],
            check=True,
        )
        seconds = time.perf_counter() - started
        theirs = json.loads((folder_path / "out.json").read_text())
    theirs = theirs.get("models", theirs)
    mine = ours.set_index("model")
    common = sorted(set(mine.index) & set(board.index))
    discrete = mine.loc[common, "discrete_win_rate"] - board.loc[common, "discrete_win_rate"]
    lc_models = sorted(set(mine.index) & set(theirs))
    lc_diff = {
        m: mine.at[m, "length_controlled_winrate"] - theirs[m]["length_controlled_winrate"]
        for m in lc_models
    }
    worst = max(lc_diff, key=lambda m: abs(lc_diff[m]))
    return {
        "discrete": {
            "models_in_common": len(common),
            "max_abs_diff_points": float(discrete.abs().max()),
            "n_total_equal": bool(
                (mine.loc[common, "n_total"] == board.loc[common, "n_total"]).all()
            ),
        },
        "lc": {
            "glm": glm,
            "models": len(lc_models),
            "max_abs_diff_points": _round(abs(lc_diff[worst])),
            "worst_model": worst,
            "mean_abs_diff_points": _round(np.mean(np.abs(list(lc_diff.values())))),
            "models_over_half_a_point": {
                m: _round(d, 3) for m, d in lc_diff.items() if abs(d) > 0.5
            },
            "alpaca_eval_seconds_incl_start": _round(seconds, 2),
            "spearman_ours_vs_csv_lc": _round(
                spearmanr(
                    mine.loc[common, "length_controlled_winrate"],
                    board.loc[common, "length_controlled_winrate"],
                ).statistic
            ),
            "spearman_alpaca_eval_vs_csv_lc": _round(
                spearmanr(
                    [theirs[m]["length_controlled_winrate"] for m in common],
                    board.loc[common, "length_controlled_winrate"],
                ).statistic
            ),
        },
    }


JUDGES = {
    "default": {},
    "model_folds": {"fold_groups": "model"},
    "model_folds_no_style": {"fold_groups": "model", "model_style": "off"},
    "no_style": {"model_style": "off"},
}
"""Judge variants: GBDTModel settings. ``default`` is the default CPU judge;
``model_folds`` calibrates it for models it has not seen (``--fold-groups model``)."""


def held_out_groups(battles, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each pair's model (n,), the sorted models (m,) and each model's group (m,)."""
    pairs_model = np.where(battles.model_a == BASELINE, battles.model_b, battles.model_a)
    models = np.array(sorted(set(pairs_model)))
    return pairs_model, models, np.random.default_rng(seed).permutation(len(models)) % 5


def leave_models_out(
    battles, cache: Path | None, seed: int, judge: str
) -> tuple[np.ndarray, list[dict]]:
    """A judge's predictions for each model's pairs, trained without its fifth of the
    models; cached per group."""
    pairs_model, models, groups = held_out_groups(battles, seed)
    proba = np.zeros((len(battles), 3))
    timings = []
    for group in range(5):
        held = np.isin(pairs_model, models[groups == group])
        stored = cache / f"{judge}_group{group}_seed{seed}.npy" if cache else None
        if stored is not None and stored.exists():
            proba[held] = np.load(stored)
            continue
        started = time.perf_counter()
        model = GBDTModel(**JUDGES[judge]).fit(battles.take(~held))
        fitted = time.perf_counter()
        proba[held] = model.predict_proba(battles.take(held).without_labels())
        timings.append(
            {
                "group": group,
                "train_rows": int((~held).sum()),
                "train_seconds": _round(fitted - started, 1),
                "predict_pairs_per_second": round(held.sum() / (time.perf_counter() - fitted)),
            }
        )
        if stored is not None:
            cache.mkdir(parents=True, exist_ok=True)
            np.save(stored, proba[held])
    return proba, timings


def judged_rates(battles, proba: np.ndarray, seed: int) -> pd.DataFrame:
    """Each held-out model's predicted win rate and LC win rate; the LC's difficulty is
    fitted from the other models' votes only (the held-out model's are unseen)."""
    pairs_model, models, groups = held_out_groups(battles, seed)
    parts = []
    for group in range(5):
        rows = np.isin(pairs_model, models[groups == group])
        difficulty = win_rates(battles.take(~rows), BASELINE).difficulty
        parts.append(
            win_rates(
                battles.take(rows), BASELINE, proba[rows], difficulty=difficulty
            ).table.set_index("model")
        )
    return pd.concat(parts)


def length_only(battles, seed: int) -> pd.Series:
    """Each held-out model's win rate predicted from length alone: a logistic fit of the
    share on tanh(standardised length difference) over the other groups' pairs."""
    _, models, groups = held_out_groups(battles, seed)
    pairs = baseline_pairs(battles, BASELINE)
    spread = np.std(pairs.delta)
    feature = np.column_stack([np.ones(len(pairs.delta)), np.tanh(pairs.delta / spread)])
    group_of = dict(zip(models, groups))
    pair_group = np.array([group_of[m] for m in pairs.model])
    predicted = {}
    for group in range(5):
        train = pair_group != group
        coef = fit_logistic(
            feature[train], pairs.share[train], 1 - pairs.share[train], np.full(2, 1e-3)
        )
        for name in models[groups == group]:
            rows = pairs.model == name
            predicted[name] = 100 * float(expit(feature[rows] @ coef).mean())
    return pd.Series(predicted)


def _agreement(truth: pd.Series, predicted: pd.Series) -> dict[str, float]:
    return {
        "spearman": _round(spearmanr(truth, predicted[truth.index]).statistic),
        "mae_points": _round((truth - predicted[truth.index]).abs().mean(), 2),
    }


def ppi_coverage(
    battles,
    proba,
    truth: pd.DataFrame,
    difficulty: pd.Series,
    votes_per_model: int,
    repeats: int,
    seed: int,
) -> dict:
    """Coverage and width of prediction-powered intervals with a few votes per model."""
    votes, judged = baseline_pairs(battles, BASELINE), baseline_pairs(battles, BASELINE, proba)
    rng = np.random.default_rng(seed)
    hits = {"ppi": 0, "votes_only": 0, "ppi_lc": 0, "votes_only_lc": 0}
    widths: dict[str, list[float]] = {key: [] for key in hits}
    trials = 0
    for name in sorted(set(votes.model)):
        voted, predicted = votes.of(name), judged.of(name)
        true_rate = truth.at[name, "win_rate"] / 100
        true_lc = truth.at[name, "length_controlled_winrate"] / 100
        hard = difficulty.reindex(predicted.instruction).to_numpy(float)
        all_design = lc_design(predicted.delta, hard)
        for _ in range(repeats):
            pick = rng.choice(len(voted.share), votes_per_model, replace=False)
            powered = ppi_mean(voted.share[pick], predicted.share[pick], predicted.share)
            lc, lc_votes = (
                length_controlled_ppi(
                    all_design[pick],
                    voted.share[pick],
                    predicted.share[pick],
                    all_design,
                    predicted.share,
                    lam,
                )
                for lam in (powered.lam, 0.0)
            )
            for key, estimate, error, target in (
                ("ppi", powered.estimate, powered.standard_error, true_rate),
                ("votes_only", powered.votes_only, powered.votes_only_standard_error, true_rate),
                ("ppi_lc", lc.win_rate / 100, lc.standard_error / 100, true_lc),
                ("votes_only_lc", lc_votes.win_rate / 100, lc_votes.standard_error / 100, true_lc),
            ):
                hits[key] += abs(estimate - target) <= Z * error
                widths[key].append(2 * Z * error * 100)
            trials += 1
    return {
        "votes_per_model": votes_per_model,
        "repeats_per_model": repeats,
        "trials": trials,
        "coverage": {key: _round(hits[key] / trials, 3) for key in hits},
        "mean_width_points": {key: _round(np.mean(v), 2) for key, v in widths.items()},
        "width_ratio_ppi_over_votes_only": _round(
            np.mean(widths["ppi"]) / np.mean(widths["votes_only"]), 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--reference-python", default=None, help="A python with alpaca_eval==0.6.6 installed."
    )
    parser.add_argument(
        "--glm",
        default="length_controlled_noreg",
        help="AlpacaEval GLM to compare with (noreg: ours has no gamed "
        "baselines to regularise to).",
    )
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--votes-per-model", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--null-models",
        nargs="*",
        default=["example"],
        help="Models also left out of a second agreement figure: AlpacaEval's "
        "'example' answers every instruction with one constant "
        "gibberish string that GPT-4-turbo prefers 84%% of the time (a "
        "null-model attack on the judge), so its 'true' win rate is the "
        "annotator's error.",
    )
    parser.add_argument(
        "--judges",
        nargs="*",
        choices=sorted(JUDGES),
        default=["default", "model_folds"],
        help="Judge variants to train leave-models-out (none: votes only).",
    )
    args = parser.parse_args()

    battles = read_battles(data_file("alpaca_eval_gpt4_turbo.csv.gz"))
    started = time.perf_counter()
    votes = win_rates(battles, BASELINE)
    result: dict = {
        "models": len(votes.table),
        "pairs": int(votes.table["n_total"].sum()),
        "ours_seconds": _round(time.perf_counter() - started, 2),
    }
    if args.reference_python:
        result.update(
            reference_side(battles, votes.table, votes.difficulty, args.reference_python, args.glm)
        )
    truth = votes.table.set_index("model")
    if args.judges:
        result["leave_models_out"] = {
            "length_only": {
                "win_rate": _agreement(truth["win_rate"], length_only(battles, args.seed))
            }
        }
        result["ppi"] = {}
    for judge in args.judges:
        proba, timings = leave_models_out(battles, args.cache, args.seed, judge)
        judged = judged_rates(battles, proba, args.seed)
        kept = truth.index.difference(args.null_models)
        result["leave_models_out"][judge] = {
            "settings": JUDGES[judge],
            "timings": timings,
            "win_rate": _agreement(truth["win_rate"], judged["win_rate"]),
            "win_rate_without_null_models": _agreement(
                truth.loc[kept, "win_rate"], judged["win_rate"]
            ),
            "lc_win_rate": _agreement(
                truth["length_controlled_winrate"], judged["length_controlled_winrate"]
            ),
            "mean_signed_error_points": _round((judged["win_rate"] - truth["win_rate"]).mean(), 2),
        }
        result["ppi"][judge] = ppi_coverage(
            battles, proba, truth, votes.difficulty, args.votes_per_model, args.repeats, args.seed
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
