"""The winners' workflow on human_dev.csv: OOF blend, distilled student, cascade.

Every number comes from prompt-grouped 5-fold CV with the same folds for all models:
three gbdt members (default; with MiniLM `--embeddings`; a wider WordLlama feature set
with other trees), their cross-fitted blend (each fold's weights fitted on the other
folds' OOF rows), a default-settings gbdt student trained on the labels mixed with the
blend's probabilities (nested: each fold's teacher is cross-validated on that fold's
training rows alone, see :func:`nested_student`), and the cascade default gbdt ->
MiniLM gbdt at share F. Prints one JSON object; writes the OOF files and the two
cascade stages into --work.

    python benchmarks/workflow.py --embeddings EMB.parquet --embed-base MINILM_DIR \
        --work /tmp/workflow
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from _common import data_file
from arenajudge.data import read_battles
from arenajudge.data.embeddings import attach_embeddings
from arenajudge.data.folds import folds
from arenajudge.data.schema import LABELS, Battles
from arenajudge.data.soft_labels import read_oof, teacher_targets
from arenajudge.data.sources import attach_sources
from arenajudge.evaluate import CVResult, oof_frame
from arenajudge.metrics import log_loss
from arenajudge.models.ensemble import cross_fitted_blend
from arenajudge.models.gbdt import GBDTModel
from arenajudge.models.gbdt_config import GBDTConfig
from arenajudge.outputs import write_csv
from cascade_curve import curve, embed_seconds_per_row

DEFAULT = GBDTConfig(n_jobs=1)
"""The default CPU model on one thread: on a shared machine, threads that wait for busy
cores slow LightGBM down; the model and its predictions are the same."""
MEMBERS: dict[str, tuple[GBDTConfig, bool]] = {
    "gbdt": (DEFAULT, False),
    "gbdt_minilm": (DEFAULT, True),
    "gbdt_wide": (
        replace(
            DEFAULT,
            embedding_dim=32,
            num_leaves=15,
            feature_fraction=0.3,
            min_child_samples=100,
            seed=1,
        ),
        False,
    ),
}
"""name -> (config, trained with the MiniLM --embeddings)."""


def oof_predictions(
    make: Callable[[], GBDTModel], train: Battles, score: Battles, fold: np.ndarray
) -> tuple[np.ndarray, float]:
    """OOF probabilities of ``score`` (fit on ``train``'s rows of the other folds) and the
    predict wall seconds per row."""
    oof = np.zeros((len(score), len(LABELS)))
    predict_seconds = 0.0
    for held in np.unique(fold):
        rows = fold == held
        model = make().fit(train.take(~rows))
        started = time.perf_counter()
        oof[rows] = model.predict_proba(score.take(rows).without_labels())
        predict_seconds += time.perf_counter() - started
    return oof, predict_seconds / len(score)


def nested_student(
    plain: Battles, embedded: Battles, fold: np.ndarray, teacher_weight: float
) -> tuple[np.ndarray, float]:
    """OOF probabilities of a default gbdt distilled from the blend, and its predict
    seconds per row, with no label of a held-out fold reaching its student: for each
    outer fold the teacher's probabilities of the training rows come from the members
    cross-validated and blended on those rows alone (nested). The blend's own OOF of
    the training rows would not do: the members that predicted them were trained on
    the held-out fold, and a student imitating them inherits what they learnt of it."""
    oof = np.zeros((len(plain), len(LABELS)))
    predict_seconds = 0.0
    for held in np.unique(fold):
        train = fold != held
        inner = fold[train]
        rows = {False: plain.take(train), True: embedded.take(train)}
        members = [
            oof_predictions(
                lambda c=config: GBDTModel(c), rows[uses_embeddings], rows[uses_embeddings], inner
            )[0]
            for config, uses_embeddings in MEMBERS.values()
        ]
        teacher = cross_fitted_blend(members, plain.target[train], inner)
        student = GBDTModel(DEFAULT).fit(
            teacher_targets(plain.take(train), teacher, teacher_weight)
        )
        started = time.perf_counter()
        oof[~train] = student.predict_proba(plain.take(~train).without_labels())
        predict_seconds += time.perf_counter() - started
    return oof, predict_seconds / len(plain)


def _write_oof(path: Path, battles: Battles, fold: np.ndarray, oof: np.ndarray) -> None:
    write_csv(oof_frame(battles, CVResult(oof=oof, fold=fold)), path, force=True)


def member_oof(
    name: str, battles: Battles, fold: np.ndarray, work: Path, reuse: bool
) -> tuple[np.ndarray, float]:
    """A member's OOF probabilities and predict seconds per row, computed and saved in
    ``work`` (``{name}_oof.csv`` + ``{name}_oof.json``), or, with ``reuse``, read back
    from an earlier run of this script with the same config, seed and folds."""
    config = MEMBERS[name][0]
    record = {"config": asdict(config), "fold_sha256": hashlib.sha256(fold.tobytes()).hexdigest()}
    meta = work / f"{name}_oof.json"
    if reuse and meta.is_file():
        saved = json.loads(meta.read_text())
        if {k: saved[k] for k in record} == record:
            return (read_oof(work / f"{name}_oof.csv", battles), saved["predict_seconds_per_row"])
    oof, seconds = oof_predictions(lambda: GBDTModel(config), battles, battles, fold)
    _write_oof(work / f"{name}_oof.csv", battles, fold, oof)
    meta.write_text(
        json.dumps({**record, "predict_seconds_per_row": seconds, "loadavg": os.getloadavg()})
    )
    return oof, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data", default=None, help="Labelled battles (default: human_dev.csv with its sources)."
    )
    parser.add_argument("--embeddings", default=None, help="MiniLM EMB.parquet of the data.")
    parser.add_argument(
        "--embed-base",
        default=None,
        help="The MiniLM model directory, to time embedding in the cascade.",
    )
    parser.add_argument("--work", required=True, help="Directory for OOF files and models.")
    parser.add_argument("--teacher-weight", type=float, default=0.5)
    parser.add_argument("--share", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--members",
        default=",".join(MEMBERS),
        help="Members to cross-validate; with fewer than all, print their scores only.",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Read back members' OOF files that an earlier run wrote to "
        "--work with the same config and folds.",
    )
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    plain = read_battles(args.data or data_file("human_dev.csv"), seed=args.seed)
    if args.data is None:
        plain = attach_sources(plain, data_file("human_dev_sources.csv"))

    def embedded() -> Battles:
        return attach_embeddings(plain, args.embeddings)

    fold = folds(plain, n_folds=5, seed=args.seed)
    target, members, oofs = plain.target, {}, {}
    for name in args.members.split(","):
        battles = embedded() if MEMBERS[name][1] else plain
        oofs[name], seconds = member_oof(name, battles, fold, work, args.reuse)
        members[name] = {
            "oof_log_loss": round(log_loss(target, oofs[name]), 4),
            "predict_ms_per_row": round(1000 * seconds, 3),
        }
    if set(oofs) != set(MEMBERS):
        print(json.dumps({"members": members, "loadavg": os.getloadavg()}, indent=2))
        return
    blend = cross_fitted_blend(list(oofs.values()), target, fold)
    _write_oof(work / "blend_oof.csv", plain, fold, blend)
    best = min(members, key=lambda name: members[name]["oof_log_loss"])
    blend_loss = log_loss(target, blend)
    student, student_seconds = nested_student(plain, embedded(), fold, args.teacher_weight)
    student_loss = log_loss(target, student)
    default = log_loss(target, oofs["gbdt"])
    print(
        json.dumps(
            {
                "data": Path(args.data).name if args.data else "human_dev.csv",
                "rows": len(plain),
                "folds": 5,
                "seed": args.seed,
                "members": members,
                "blend": {
                    "oof_log_loss": round(blend_loss, 4),
                    "best_member": best,
                    "gain_over_best_member": round(members[best]["oof_log_loss"] - blend_loss, 4),
                    "gain_over_default_gbdt": round(default - blend_loss, 4),
                },
                "student": {
                    "teacher_weight": args.teacher_weight,
                    "oof_log_loss": round(student_loss, 4),
                    "gain_over_default_gbdt": round(default - student_loss, 4),
                    "share_of_blend_gain_recovered": round(
                        (default - student_loss) / (default - blend_loss), 3
                    ),
                    "predict_ms_per_row": round(1000 * student_seconds, 3),
                },
                "cascade": _cascade(plain, embedded(), fold, oofs, work, args),
                "loadavg": os.getloadavg(),
            },
            indent=2,
        )
    )


def _cascade(
    plain: Battles, embedded: Battles, fold: np.ndarray, oofs: dict, work: Path, args
) -> dict:
    """Cascade gbdt -> gbdt_minilm at ``args.share`` against gbdt_minilm on every row:
    log loss cross-fitted on all OOF rows; wall time of fold 0's rows scored by the two
    stages trained on the other folds."""
    held = fold == 0
    for name, battles in (("gbdt", plain), ("gbdt_minilm", embedded)):
        GBDTModel(MEMBERS[name][0]).fit(battles.take(~held)).save(work / name, force=True)
    rate = embed_seconds_per_row(embedded, args.embed_base, 128) if args.embed_base else 0.0
    oof = (oofs["gbdt"], oofs["gbdt_minilm"])
    timing = embedded.take(held)
    points = curve(
        embedded,
        str(work / "gbdt"),
        str(work / "gbdt_minilm"),
        oof,
        (args.share, 1.0),
        rate,
        args.seed,
        timing=timing,
    )
    slow_started = time.perf_counter()
    GBDTModel.load(work / "gbdt_minilm").predict_proba(timing.without_labels())
    slow_seconds = time.perf_counter() - slow_started + len(timing) * rate
    return {
        "share": args.share,
        "embed_seconds_per_row": round(rate, 5),
        "cascade": points[0],
        "blend_on_every_row": points[1],
        "slow_member_every_row": {
            "log_loss": round(log_loss(plain.target, oofs["gbdt_minilm"]), 4),
            "rows_timed": len(timing),
            "seconds": round(slow_seconds, 2),
        },
    }


if __name__ == "__main__":
    main()
