"""Shared fixtures: small synthetic battle files and the real data folder."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

WORDS = [
    "model",
    "answer",
    "explain",
    "python",
    "code",
    "list",
    "data",
    "result",
    "first",
    "second",
    "detail",
    "because",
    "example",
    "simple",
    "table",
    "value",
    "step",
    "reason",
    "clear",
]


@pytest.fixture(autouse=True)
def _cli_logging_stays_in_its_test():
    """The CLI points the ``arenajudge`` logger at stderr and stops it propagating; an
    in-process CLI run (in a test or a module fixture) must not hide a later test's log
    records from ``caplog``. Each test starts from the library's default."""
    logger = logging.getLogger("arenajudge")
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def requires_shared_data(name: str) -> Path:
    """The path of a real data file, or skip the test saying why."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} is absent (it lives in ../shared/data beside the repo)")
    return path


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Poll ``condition`` with a short pause between tries until it holds; fail the test
    once ``timeout`` seconds have passed (a deadline for a hang, not a speed check)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting"
        time.sleep(0.01)


def _text(rng: np.random.Generator, n_words: int, markdown: bool) -> str:
    body = " ".join(rng.choice(WORDS, size=max(n_words, 1)))
    return f"## Answer\n\n- {body}\n- **done**" if markdown else body


def synthetic_frame(n: int = 160, seed: int = 0, n_prompts: int | None = None) -> pd.DataFrame:
    """Kaggle-layout battles whose winner is mostly the longer, markdown-rich response."""
    rng = np.random.default_rng(seed)
    n_prompts = n_prompts or n // 2
    rows = []
    for i in range(n):
        len_a, len_b = rng.integers(3, 80, size=2)
        md_a, md_b = (rng.random(2) < 0.5).astype(int)
        score = (len_a - len_b) / 25 + (md_a - md_b) + rng.normal(0, 0.7)
        winner = 2 if abs(score) < 0.35 else (0 if score > 0 else 1)
        topic = i % n_prompts
        prompt = f"question {topic}: " + " ".join(WORDS[topic % len(WORDS) :][:6])
        rows.append(
            {
                "id": 1000 + i,
                "model_a": f"m{rng.integers(4)}",
                "model_b": f"m{rng.integers(4)}",
                "prompt": json.dumps([prompt]),
                "response_a": json.dumps([_text(rng, len_a, md_a)]),
                "response_b": json.dumps([_text(rng, len_b, md_b)]),
                **{
                    label: int(winner == k)
                    for k, label in enumerate(("winner_model_a", "winner_model_b", "winner_tie"))
                },
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture
def battles_csv(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    synthetic_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small CPU model (20 rounds, no holdout) on ``synthetic_frame(n=160, seed=1)``,
    trained once for every module that only reads it."""
    from arenajudge.data import read_battles
    from arenajudge.models.gbdt import GBDTModel

    root = tmp_path_factory.mktemp("tiny_model")
    synthetic_frame(n=160, seed=1).to_csv(root / "train.csv", index=False)
    GBDTModel(n_estimators=20, holdout_share=0, embedding_dim=8).fit(
        read_battles(root / "train.csv")
    ).save(root / "model")
    return root / "model"
