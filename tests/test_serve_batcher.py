"""The micro-batcher alone: plain asyncio and a model, no FastAPI (runs without the serve
extra). Also home of the wrapper models the service tests use."""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import arenajudge.serve
from arenajudge.data import Battles
from arenajudge.errors import DataError
from arenajudge.models.contract import PreferenceModel
from arenajudge.models.registry import load_model
from arenajudge.serve.batcher import MicroBatcher

SECRET = "zebra-quokka-7431"  # a text that must never reach the logs


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> PreferenceModel:
    return load_model(tiny_model_dir)


class GatedModel(PreferenceModel):
    """Wraps a model; ``predict_proba`` waits for ``gate`` and can be made to fail."""

    backend = "gated"

    def __init__(self, inner: PreferenceModel) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.left = threading.Event()  # set once predict_proba is past the gate
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False
        self.calls: list[int] = []

    def fit(self, battles, *, sample_weight=None):
        return self

    def predict_proba(self, battles, tie_rate=None):
        self.calls.append(len(battles))
        self.entered.set()
        self.gate.wait(timeout=10)
        self.left.set()
        if self.fail:
            raise RuntimeError(f"cannot score {battles.prompt[0]}")
        return self.inner.predict_proba(battles, tie_rate=tie_rate)

    def save(self, path, *, force=False):
        raise NotImplementedError

    @classmethod
    def load(cls, path):
        raise NotImplementedError


class MarkedModel(GatedModel):
    """Fails on any battle whose prompt is marked: ``BOOM`` a bug, ``BAD`` bad input."""

    def predict_proba(self, battles, tie_rate=None):
        self.calls.append(len(battles))
        prompts = [turn for turns in battles.prompt for turn in turns]
        if any("BOOM" in prompt for prompt in prompts):
            raise RuntimeError(f"cannot score {prompts}")
        if any("BAD" in prompt for prompt in prompts):
            raise DataError(f"cannot read {prompts}", column="prompt")
        return self.inner.predict_proba(battles, tie_rate=tie_rate)


def _battles(*prompts: str, first: int = 0) -> Battles:
    """One battle per prompt, response A growing with the battle's number."""
    numbers = range(first, first + len(prompts))
    return Battles(
        id=np.array([f"b{i}" for i in numbers], dtype=object),
        prompt=[(prompt,) for prompt in prompts],
        response_a=[("w " * i,) for i in numbers],
        response_b=[("a much longer answer with many words in it",) for _ in numbers],
    )


def _score_together(batcher_model, requests, tie_rates) -> list:
    """Each request's answer (or exception), all queued at once on one batcher."""

    async def scenario() -> list:
        batcher = MicroBatcher(batcher_model, ThreadPoolExecutor(1))
        runner = asyncio.create_task(batcher.run())
        try:
            return await asyncio.gather(
                *(batcher.score(r, t) for r, t in zip(requests, tie_rates)),
                return_exceptions=True,
            )
        finally:
            runner.cancel()

    return asyncio.run(scenario())


def test_concurrent_requests_share_one_predict_call(model):
    counting = GatedModel(model)
    requests = [_battles(*["say something"] * k) for k in (1, 3, 2, 1)]
    tie_rates = [None, None, 0.5, None]
    results = _score_together(counting, requests, tie_rates)
    assert sorted(counting.calls) == [2, 5]  # one call per tie rate, not one per request
    for battles, tie_rate, proba in zip(requests, tie_rates, results):
        expected = model.predict_proba(battles, tie_rate=tie_rate)
        np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-12)


def test_a_failing_request_fails_alone_in_its_micro_batch(model, caplog):
    marked = MarkedModel(model)
    prompts = ["fine", "BOOM " + SECRET, "also fine", "BAD", "fine again"]
    requests = [_battles(prompt, "say something", first=i) for i, prompt in enumerate(prompts)]
    caplog.set_level(logging.DEBUG, logger="arenajudge")
    results = _score_together(marked, requests, [None] * len(requests))
    assert marked.calls == [10, 2, 2, 2, 2, 2]  # the merged call, then one per request
    assert isinstance(results[1], RuntimeError) and isinstance(results[3], DataError)
    for i in (0, 2, 4):
        expected = model.predict_proba(requests[i])
        np.testing.assert_allclose(results[i], expected, rtol=0, atol=1e-12)
    assert "failed: RuntimeError" in caplog.text and "cannot be scored: DataError" in caplog.text
    assert "Traceback" in caplog.text and "predict_proba" in caplog.text  # debug level
    assert SECRET not in caplog.text


def test_the_batcher_imports_without_fastapi(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.delitem(sys.modules, "arenajudge.serve.batcher")
    monkeypatch.setattr(arenajudge.serve, "batcher", arenajudge.serve.batcher)
    assert importlib.import_module("arenajudge.serve.batcher").MicroBatcher
