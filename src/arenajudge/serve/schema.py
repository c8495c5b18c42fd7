"""The judge service's protocol: request and response models, their validators, and the
shape of an error answer. pydantic only, no web framework: what a client sends and gets.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from arenajudge.data.cells import repair_surrogates
from arenajudge.data.schema import Turns
from arenajudge.errors import MissingDependencyError

try:
    from pydantic import BaseModel, ConfigDict, Field, PlainValidator, field_validator
except ImportError as exc:  # the serve extra is optional
    raise MissingDependencyError(
        "pydantic is not installed; install it with `pip install arenajudge[serve]`"
    ) from exc

MAX_ID_LENGTH = 1_000
Verdict = Literal["model_a", "model_b", "tie"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
"""Verdict names, in ``LABELS`` order."""


# --------------------------------------------------------------------------- validators
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


# --------------------------------------------------------------------------- request
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


# --------------------------------------------------------------------------- responses
class Probabilities(BaseModel):
    winner_model_a: float
    winner_model_b: float
    winner_tie: float


class Judgement(Probabilities):
    id: str | None
    verdict: Verdict
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


# --------------------------------------------------------------------------- errors
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


def field_error(field: str, kind: str, message: str) -> dict[str, str]:
    """One item of a 422's ``detail`` (a :class:`FieldError`), as JSON."""
    return {"field": field, "type": kind, "message": message}


def describe_validation_error(error: dict[str, Any]) -> dict[str, str]:
    """One pydantic error as a :class:`FieldError`; the offending input is not echoed."""
    kind = str(error.get("type", "value_error"))
    loc = tuple(error.get("loc", ()))
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "decode error")
        return field_error(
            "body", kind, f"body is not valid JSON ({reason} at character {loc[-1]})"
        )
    if isinstance(error.get("input"), bytes):  # FastAPI did not parse the body as JSON
        return field_error(
            "body",
            kind,
            "body is not JSON; send a JSON object with the header `Content-Type: application/json`",
        )
    message = repair_surrogates(str(error.get("msg", ""))).removeprefix("Value error, ")
    return field_error(_field_name(loc), kind, message)


def _field_name(loc: tuple[Any, ...]) -> str:
    """``("body", "battles", 3, "prompt")`` -> ``"battles[3].prompt"``."""
    name = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += ("." if name else "") + repair_surrogates(str(part))
    return name or "body"
