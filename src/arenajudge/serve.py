"""The HTTP judge service behind ``arenajudge serve`` (FastAPI + uvicorn).

Each server process loads its model once. Concurrent requests are micro-batched: they
wait a few milliseconds in a queue, are scored together by one ``predict_proba`` call in
a worker thread (so the event loop keeps answering, ``/health`` included), and each gets
its own rows back. Prompt and response texts are never logged.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

from arenajudge.data.cells import repair_surrogates
from arenajudge.data.schema import LABELS, Battles, Turns, swap_proba
from arenajudge.errors import DataError, MissingDependencyError
from arenajudge.http_limits import BodyLimit, check_can_listen
from arenajudge.micro_batch import MicroBatcher
from arenajudge.models.contract import PreferenceModel
from arenajudge.models.manifest import MANIFEST, check_scores_raw_text, read_manifest
from arenajudge.models.registry import load_model

try:
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, PlainValidator, field_validator
except ImportError as exc:  # the serve extra is optional
    raise MissingDependencyError(
        "fastapi is not installed; install it with `pip install arenajudge[serve]`"
    ) from exc

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 1_000_000
"""Largest accepted request body in bytes (``--max-body``)."""
DEFAULT_MAX_BATCH = 1_000
"""Most battles accepted in one request (``--max-batch``)."""
WORKER_START_TIMEOUT_S = 60
"""Seconds a ``--workers`` process may take to start before uvicorn replaces it."""
CONFIG_ENV = "ARENAJUDGE_SERVE_CONFIG"
"""Environment variable that hands the settings to ``--workers`` processes."""
MAX_ID_LENGTH = 1_000
VERDICTS = ("model_a", "model_b", "tie")
"""Verdict names, in ``LABELS`` order."""


# --------------------------------------------------------------------------- schema
def _as_turns(value: Any) -> Turns:
    """A side as sent (a string, or a list of turns with ``null`` for empty ones) -> turns.

    Lone surrogate escapes such as ``"\\ud800"`` become U+FFFD, as in the file readers.
    """
    if isinstance(value, str):
        return (repair_surrogates(value),)
    if not isinstance(value, list):
        raise ValueError(
            f"must be a string or a list of strings (one per turn), not a JSON {_json_type(value)}"
        )
    for position, turn in enumerate(value):
        if turn is not None and not isinstance(turn, str):
            raise ValueError(f"turn {position} is a JSON {_json_type(turn)}, not a string")
    return tuple("" if turn is None else repair_surrogates(turn) for turn in value)


def _as_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not a JSON {_json_type(value)}")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"is {len(value):,} characters long; at most {MAX_ID_LENGTH:,}")
    return repair_surrogates(value)


def _json_type(value: Any) -> str:
    names = {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


# Plain validators: pydantic's own str check rejects lone surrogates, which are repaired.
Side = Annotated[Turns, PlainValidator(_as_turns, json_schema_input_type=str | list[str | None])]
BattleId = Annotated[str | None, PlainValidator(_as_id, json_schema_input_type=str | None)]


class BattleIn(BaseModel):
    """One battle to judge."""

    model_config = ConfigDict(strict=True, extra="forbid")

    id: BattleId = Field(None, description="Echoed back; optional.")
    prompt: Side = Field(description="The user turn(s): a string or a list of turns.")
    response_a: Side = Field(description="Response A: a string or a list of turns.")
    response_b: Side = Field(description="Response B: a string or a list of turns.")


class JudgeRequest(BaseModel):
    """Body of ``POST /v1/judge``."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "battles": [
                        {
                            "id": "1",
                            "prompt": "What is 2+2?",
                            "response_a": "4",
                            "response_b": ["It is 5."],
                        }
                    ],
                    "tie_rate": 0.3,
                    "swap": True,
                }
            ]
        },
    )

    battles: list[BattleIn] = Field(
        min_length=1, description="One battle object or a list of them."
    )
    tie_rate: float | None = Field(
        None, gt=0, lt=1, description="Shift predictions to this tie rate (class prior)."
    )
    swap: bool = Field(False, description="Also score each battle with A and B exchanged.")

    @field_validator("battles", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value


class Probabilities(BaseModel):
    winner_model_a: float
    winner_model_b: float
    winner_tie: float


class Judgement(Probabilities):
    id: str | None
    verdict: Literal["model_a", "model_b", "tie"]
    swapped: Probabilities | None = Field(
        None,
        description="With `swap`: the probabilities when A and B are shown in the "
        "other order, mapped back to the original A and B; equal to "
        "the main ones for a model without position bias.",
    )


class ModelInfo(BaseModel):
    name: str
    backend: str
    version: str = Field(description="The arenajudge version that saved the model.")
    manifest_sha256: str


class JudgeResponse(BaseModel):
    model: ModelInfo
    results: list[Judgement]


class HealthStatus(BaseModel):
    status: Literal["ok", "loading", "failed"]
    model: str


class ErrorMessage(BaseModel):
    detail: str


class FieldError(BaseModel):
    field: str = Field(description="Where: `body`, `battles[3].prompt`, `tie_rate`, ...")
    type: str = Field(description="pydantic's error type, e.g. `missing`, `json_invalid`.")
    message: str


class FieldErrors(BaseModel):
    detail: list[FieldError]


JUDGE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorMessage,
        "description": "The body cannot be decoded: bytes that "
        "are not UTF-8, or a number over 4,300 digits",
    },
    413: {
        "model": ErrorMessage,
        "description": "Body over --max-body bytes or more battles than --max-batch",
    },
    422: {
        "model": FieldErrors,
        "description": "Not JSON, nested too deep, or invalid battles; `detail` names "
        "each bad field (`battles` when the model cannot score them)",
    },
    500: {"model": ErrorMessage, "description": "The model failed while scoring"},
    503: {"model": ErrorMessage, "description": "The model is still loading or failed to load"},
}
"""Every status ``POST /v1/judge`` answers besides 200, documented in its OpenAPI schema."""


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


def _judgements(request: JudgeRequest, proba: np.ndarray) -> list[Judgement]:
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


# --------------------------------------------------------------------------- limits
def _field_name(loc: tuple) -> str:
    """``("body", "battles", 3, "prompt")`` -> ``"battles[3].prompt"``."""
    name = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += ("." if name else "") + repair_surrogates(str(part))
    return name or "body"


def _describe(error: dict[str, Any]) -> dict[str, str]:
    """One pydantic error as {field, message, type}; the offending input is not echoed."""
    kind = str(error.get("type", "value_error"))
    loc = tuple(error.get("loc", ()))
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "decode error")
        return {
            "field": "body",
            "type": kind,
            "message": f"body is not valid JSON ({reason} at character {loc[-1]})",
        }
    if isinstance(error.get("input"), bytes):  # FastAPI did not parse the body as JSON
        return {
            "field": "body",
            "type": kind,
            "message": "body is not JSON; send a JSON "
            "object with the header `Content-Type: application/json`",
        }
    message = repair_surrogates(str(error.get("msg", ""))).removeprefix("Value error, ")
    return {"field": _field_name(loc), "type": kind, "message": message}


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each bad field and item index."""
    return JSONResponse(
        status_code=422, content={"detail": [_describe(error) for error in exc.errors()]}
    )


async def _check_batch_count(request: Request) -> None:
    """413 for more battles than ``max_batch``, before they are validated one by one."""
    try:
        body = await request.json()  # already parsed and cached by FastAPI
    except ValueError:  # FastAPI answers bad JSON itself
        return
    battles = body.get("battles") if isinstance(body, dict) else None
    limit = request.app.state.settings.max_batch
    if isinstance(battles, list) and len(battles) > limit:
        raise HTTPException(
            413,
            f"{len(battles):,} battles in one request; at most "
            f"{limit:,} are accepted (--max-batch)",
        )


# --------------------------------------------------------------------------- app
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


class _State:
    """The model and its batcher, set once loading has finished."""

    def __init__(self, settings: Settings, info: ModelInfo, manifest: dict[str, Any]):
        self.settings = settings
        self.info = info
        self.manifest = manifest
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


def model_info(model_dir: str | Path) -> tuple[ModelInfo, dict[str, Any]]:
    """Name, backend, version and manifest hash of a model directory, and its manifest."""
    manifest = read_manifest(model_dir)
    digest = hashlib.sha256((Path(model_dir) / MANIFEST).read_bytes()).hexdigest()
    info = ModelInfo(
        name=Path(model_dir).resolve().name,
        backend=str(manifest["backend"]),
        version=str(manifest.get("package_version", "")),
        manifest_sha256=digest,
    )
    return info, manifest


INTERPRETER_KEYS = frozenset(
    {"python", "python_version", "executable", "platform", "interpreter", "hostname"}
)
"""Manifest keys, at any depth, that describe the machine rather than the model."""
HIDDEN_PATH = "(hidden; start the service with --show-paths to show it)"
_PATH_KEYS = frozenset({"file", "path", "dir", "directory", "folder"})
_PATH_KEY_ENDINGS = ("_file", "_path", "_dir", "_directory", "_folder")
# absolute POSIX or Windows, home-relative or dot-relative
_PATH_SHAPE = re.compile(r"^(?:[/\\~]|[A-Za-z]:[/\\]|\.\.?(?:[/\\]|$))")


def public_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` as ``/v1/model`` shows it by default: interpreter details left out and
    every file-system path replaced by ``HIDDEN_PATH`` (training files, a base model's
    directory, member and checkpoint directories), so clients learn nothing of the
    server's disk. Hub ids and the model's own file names (``artifacts``) stay.

    A string is a path when its key says so (``file``, ``path``, ``*_dir``, ...), when it
    looks like one (absolute, ``~``, ``./``), when a model source the manifest records
    is a local directory or file (its ``given`` name, wherever it appears), or when it
    names an existing file or directory with a separator in it.
    """
    local = {
        str(source[name])
        for source in _dicts(manifest)
        if source.get("kind") in ("directory", "gguf")
        for name in ("given", "name")
        if name in source
    }

    def clean(value: Any, key: str) -> Any:
        if isinstance(value, dict):
            return {k: clean(v, str(k)) for k, v in value.items() if k not in INTERPRETER_KEYS}
        if isinstance(value, list):
            return [clean(item, key) for item in value]
        if isinstance(value, str) and value and (value in local or _is_path(key, value)):
            return HIDDEN_PATH
        return value

    return clean(manifest, "")


def without_battle_keys(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` without the keys of the battles the model was trained on: 8 bytes a
    battle (600 KB for the Kaggle set) that would let a client test whether a battle
    was in the training data; ``evaluate`` and ``report`` read them from the disk."""
    training = manifest.get("training")
    if not isinstance(training, dict) or "battle_keys" not in training:
        return manifest
    return {**manifest, "training": {k: v for k, v in training.items() if k != "battle_keys"}}


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    """Every mapping nested in ``value``, itself included."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _dicts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _dicts(item)


def _is_path(key: str, value: str) -> bool:
    if key in _PATH_KEYS or key.endswith(_PATH_KEY_ENDINGS) or _PATH_SHAPE.match(value):
        return True
    try:
        return ("/" in value or os.sep in value) and Path(value).exists()
    except (OSError, ValueError):  # too long or not a valid name: not a path here
        return False


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
    info, manifest = model_info(settings.model_dir)
    state = _State(settings, info, manifest)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arenajudge-score")
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task] = []

        async def start(loaded: PreferenceModel | None) -> None:
            try:
                loaded = loaded or await loop.run_in_executor(
                    executor, load_ready_model, settings.model_dir, settings.runtime
                )
            except Exception as exc:
                state.load_error = f"{type(exc).__name__}: {exc}"
                logger.error("loading the model failed: %s", state.load_error)
                return
            state.batcher = MicroBatcher(loaded, executor)
            tasks.append(asyncio.create_task(state.batcher.run()))
            logger.info("model %s loaded", info.name)

        tasks.append(asyncio.create_task(start(model)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="arenajudge",
        lifespan=lifespan,
        description="Predicts which of two chatbot responses a person prefers: "
        "p(A wins), p(B wins), p(tie).",
    )
    app.state.settings = settings
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(BodyLimit, max_body=settings.max_body)

    def ready_batcher() -> MicroBatcher:
        if state.batcher is None:
            raise HTTPException(
                503,
                "the model is still loading"
                if state.load_error is None
                else "the model failed to load; see the server log",
            )
        return state.batcher

    @app.get(
        "/health",
        responses={
            200: {"description": "The model is loaded", "model": HealthStatus},
            503: {
                "description": "The model is still loading or failed to load",
                "model": HealthStatus,
            },
        },
    )
    async def health() -> JSONResponse:
        """200 once the model is loaded, 503 before (or if loading failed)."""
        if state.batcher is not None:
            return JSONResponse({"status": "ok", "model": info.name})
        status = "loading" if state.load_error is None else "failed"
        return JSONResponse({"status": status, "model": info.name}, status_code=503)

    shown_manifest = without_battle_keys(
        state.manifest if settings.show_paths else public_manifest(state.manifest)
    )

    @app.get("/v1/model")
    async def model_manifest() -> dict[str, Any]:
        """The model's name, version, manifest hash and manifest (file-system paths and
        interpreter details hidden unless the service was started with --show-paths)."""
        return {**info.model_dump(), "manifest": shown_manifest}

    @app.post(
        "/v1/judge",
        response_model=JudgeResponse,
        dependencies=[Depends(_check_batch_count)],
        responses=JUDGE_ERRORS,
    )
    async def judge(request: JudgeRequest) -> JudgeResponse:
        """Probabilities that A wins, B wins or it is a tie, and the verdict, per battle."""
        batcher = ready_batcher()
        try:
            proba = await batcher.score(battles_from_request(request), request.tie_rate)
        except DataError as exc:  # these battles cannot be scored by this model
            raise HTTPException(
                422, [{"field": "battles", "type": "data_error", "message": str(exc)}]
            ) from None
        except Exception:
            # Re-raised bare, the error would reach uvicorn's log with a message that
            # could quote the texts.
            raise HTTPException(500, "scoring failed; see the server log") from None
        return JudgeResponse(model=info, results=_judgements(request, proba))

    return app


def app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes: settings come from ``CONFIG_ENV``."""
    return create_app(Settings(**json.loads(os.environ[CONFIG_ENV])))


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "info",
) -> None:
    """Run the service until interrupted.

    The port is checked and the model loaded (and checked) here first, so a busy port
    or a bad model directory fails with one error before uvicorn starts. With
    ``workers`` > 1 each uvicorn worker process loads its own copy and micro-batches
    its own requests. ``log_level`` (debug, info, warning or error) applies to uvicorn's
    log and the service's own; at ``debug`` a scoring failure logs its traceback
    (without any exception message, which could quote the texts).
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingDependencyError(
            "uvicorn is not installed; install it with `pip install arenajudge[serve]`"
        ) from exc
    # uvicorn writes its request log to stdout, which is for data: send it to stderr.
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    # Configured here, not only by the CLI, so that --workers processes log alike.
    log_config["loggers"]["arenajudge"] = {
        "handlers": ["default"],
        "propagate": False,
        "level": log_level.upper(),
    }
    options = {"host": host, "port": port, "log_config": log_config, "log_level": log_level}
    check_can_listen(host, port)
    model = load_ready_model(settings.model_dir, settings.runtime)
    if workers == 1:
        uvicorn.run(create_app(settings, model), **options)
        return
    del model
    os.environ[CONFIG_ENV] = json.dumps(asdict(settings))
    # A worker answers uvicorn's health pings only once its imports are done, which
    # takes longer than uvicorn's default 5 s on a busy machine.
    uvicorn.run(
        f"{__name__}:app_from_env",
        factory=True,
        workers=workers,
        timeout_worker_healthcheck=WORKER_START_TIMEOUT_S,
        **options,
    )
