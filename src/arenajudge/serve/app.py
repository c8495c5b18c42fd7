"""The judge service's FastAPI app: settings, the model's state, routes and lifespan.

Each server process loads its model once. Concurrent requests are micro-batched
(:class:`~arenajudge.serve.batcher.MicroBatcher`): scored together by one
``predict_proba`` call in a worker thread, so the event loop keeps answering, ``/health``
included. Prompt and response texts are never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from arenajudge.data.schema import LABELS, Battles, swap_proba
from arenajudge.errors import DataError, MissingDependencyError
from arenajudge.models.contract import PreferenceModel
from arenajudge.models.manifest import check_scores_raw_text, read_manifest
from arenajudge.models.registry import load_model
from arenajudge.serve.batcher import MicroBatcher
from arenajudge.serve.limits import BodyLimit
from arenajudge.serve.model_info import model_info, shown_manifest
from arenajudge.serve.schema import (
    JUDGE_ERRORS,
    VERDICTS,
    HealthStatus,
    Judgement,
    JudgeRequest,
    JudgeResponse,
    Probabilities,
    describe_validation_error,
    field_error,
)

try:
    from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
except ImportError as exc:  # the serve extra is optional
    raise MissingDependencyError(
        "fastapi is not installed; install it with `pip install arenajudge[serve]`"
    ) from exc

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 1_000_000
"""Largest accepted request body in bytes (``--max-body``)."""
DEFAULT_MAX_BATCH = 1_000
"""Most battles accepted in one request (``--max-batch``)."""


@dataclass(frozen=True)
class Settings:
    """What ``arenajudge serve`` passes to each server process."""

    model_dir: str
    max_body: int = DEFAULT_MAX_BODY
    max_batch: int = DEFAULT_MAX_BATCH
    runtime: dict[str, Any] | None = None
    """Prediction-time settings of a transformer model (see :func:`load_model`)."""
    show_paths: bool = False
    """``/v1/model`` shows the manifest's file-system paths and interpreter details
    (``--show-paths``); by default they are hidden from clients."""


class ServiceState:
    """One app's model identity, and its batcher once loading has finished."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.info, manifest = model_info(settings.model_dir)
        self.shown_manifest = shown_manifest(manifest, show_paths=settings.show_paths)
        self.batcher: MicroBatcher | None = None
        self.load_error: str | None = None


def load_ready_model(
    model_dir: str | Path, runtime: dict[str, Any] | None = None
) -> PreferenceModel:
    """Load a model and score one dummy battle, so the first request pays no start-up cost
    (e.g. reading the embedding tables)."""
    check_scores_raw_text(read_manifest(model_dir), model_dir, "the judge service")
    model = load_model(model_dir, runtime)
    model.predict_proba(
        Battles(
            id=np.array(["warm-up"], dtype=object),
            prompt=[("",)],
            response_a=[("",)],
            response_b=[("",)],
        )
    )
    return model


def create_app(settings: Settings, model: PreferenceModel | None = None) -> FastAPI:
    """The judge service for ``settings.model_dir``.

    Parameters
    ----------
    settings : Settings
        Model directory and request limits.
    model : PreferenceModel, optional
        The model, already loaded from ``settings.model_dir``. Without it the model is
        loaded in the background at startup and ``/health`` answers 503 until it is ready.

    Raises
    ------
    ModelLoadError
        The model directory has no valid manifest.
    """
    service = ServiceState(settings)
    app = FastAPI(
        title="arenajudge",
        lifespan=_lifespan(service, model),
        description="Predicts which of two chatbot responses a person prefers: "
        "p(A wins), p(B wins), p(tie).",
        exception_handlers={RequestValidationError: _validation_error},
    )
    app.state.service = service
    app.add_middleware(BodyLimit, max_body=settings.max_body)
    app.include_router(router)
    return app


# --------------------------------------------------------------------------- lifespan
def _lifespan(
    service: ServiceState, model: PreferenceModel | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start loading (unless ``model`` is given) and micro-batching; stop both at shutdown.

    One scoring thread per process: ``predict_proba`` calls run one at a time.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arenajudge-score")
        task = asyncio.create_task(_load_and_batch(service, model, executor))
        try:
            yield
        finally:
            task.cancel()
            executor.shutdown(wait=False, cancel_futures=True)

    return lifespan


async def _load_and_batch(
    service: ServiceState, model: PreferenceModel | None, executor: ThreadPoolExecutor
) -> None:
    """Load the model in ``executor`` (unless given), then serve the batcher's queue until
    cancelled. A failed load is kept in ``service.load_error`` for ``/health``."""
    if model is None:
        settings = service.settings
        try:
            model = await asyncio.get_running_loop().run_in_executor(
                executor, load_ready_model, settings.model_dir, settings.runtime
            )
        except Exception as exc:
            service.load_error = f"{type(exc).__name__}: {exc}"
            logger.error("loading the model failed: %s", service.load_error)
            return
    service.batcher = MicroBatcher(model, executor)
    logger.info("model %s loaded", service.info.name)
    await service.batcher.run()


# --------------------------------------------------------------------------- errors
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each bad field and item index."""
    return JSONResponse(
        status_code=422,
        content={"detail": [describe_validation_error(error) for error in exc.errors()]},
    )


async def _check_batch_count(request: Request) -> None:
    """413 for more battles than ``max_batch``, before they are validated one by one."""
    try:
        body = await request.json()  # already parsed and cached by FastAPI
    except ValueError:  # FastAPI answers bad JSON itself
        return
    battles = body.get("battles") if isinstance(body, dict) else None
    limit = _service(request).settings.max_batch
    if isinstance(battles, list) and len(battles) > limit:
        raise HTTPException(
            413,
            f"{len(battles):,} battles in one request; at most "
            f"{limit:,} are accepted (--max-batch)",
        )


# --------------------------------------------------------------------------- routes
def _service(request: Request) -> ServiceState:
    service: ServiceState = request.app.state.service
    return service


Service = Annotated[ServiceState, Depends(_service)]
router = APIRouter()


@router.get(
    "/health",
    responses={
        200: {"description": "The model is loaded", "model": HealthStatus},
        503: {"description": "The model is still loading or failed to load", "model": HealthStatus},
    },
)
async def health(service: Service) -> JSONResponse:
    """200 once the model is loaded, 503 before (or if loading failed)."""
    name = service.info.name
    if service.batcher is not None:
        return JSONResponse({"status": "ok", "model": name})
    status = "loading" if service.load_error is None else "failed"
    return JSONResponse({"status": status, "model": name}, status_code=503)


@router.get("/v1/model")
async def model_manifest(service: Service) -> dict[str, Any]:
    """The model's name, version, manifest hash and manifest (file-system paths and
    interpreter details hidden unless the service was started with --show-paths)."""
    return {**service.info.model_dump(), "manifest": service.shown_manifest}


@router.post(
    "/v1/judge",
    response_model=JudgeResponse,
    dependencies=[Depends(_check_batch_count)],
    responses=JUDGE_ERRORS,
)
async def judge(request: JudgeRequest, service: Service) -> JudgeResponse:
    """Probabilities that A wins, B wins or it is a tie, and the verdict, per battle."""
    batcher = service.batcher
    if batcher is None:  # checked after validation: a bad body is a 422 even while loading
        failed = service.load_error is not None
        raise HTTPException(
            503,
            "the model failed to load; see the server log"
            if failed
            else "the model is still loading",
        )
    try:
        proba = await batcher.score(battles_from_request(request), request.tie_rate)
    except DataError as exc:  # these battles cannot be scored by this model
        raise HTTPException(422, [field_error("battles", "data_error", str(exc))]) from None
    except Exception:
        # Re-raised bare, the error would reach uvicorn's log with a message that
        # could quote the texts.
        raise HTTPException(500, "scoring failed; see the server log") from None
    return JudgeResponse(model=service.info, results=judgements(request, proba))


# --------------------------------------------------------------------------- scoring
def battles_from_request(request: JudgeRequest) -> Battles:
    """The request's battles, followed by their A/B-swapped copies when ``swap`` is set."""
    items = request.battles
    ids = [item.id or str(position) for position, item in enumerate(items)]
    prompt = [item.prompt for item in items]
    response_a = [item.response_a for item in items]
    response_b = [item.response_b for item in items]
    if request.swap:
        ids, prompt = ids * 2, prompt * 2
        response_a, response_b = response_a + response_b, response_b + response_a
    return Battles(
        id=np.array(ids, dtype=object), prompt=prompt, response_a=response_a, response_b=response_b
    )


def judgements(request: JudgeRequest, proba: np.ndarray) -> list[Judgement]:
    """One result per battle of ``request`` from ``proba`` (n, 3), or (2n, 3) with
    ``swap``: the swapped rows, mapped back to the original A and B, go in ``swapped``."""
    n = len(request.battles)
    swapped = swap_proba(proba[n:]) if request.swap else [None] * n

    def probabilities(row: np.ndarray) -> dict[str, float]:
        return dict(zip(LABELS, map(float, row)))

    return [
        Judgement(
            id=item.id,
            verdict=VERDICTS[int(np.argmax(row))],
            swapped=None if other is None else Probabilities(**probabilities(other)),
            **probabilities(row),
        )
        for item, row, other in zip(request.battles, proba[:n], swapped)
    ]
