"""MODEL_DIR of a transformer model: writing it, and reading it back to predict.

Layout::

    manifest.json        backend, resolved TransformerConfig, label order, packing schema,
                         training data summary (with the base: what was given, its hub
                         commit or GGUF sha256), truncation statistics, history
    body/                fine-tuned (or LoRA-merged) weights: config.json + *.safetensors
    adapter/             or, for an unmerged LoRA: adapter_config.json +
                         adapter_model.safetensors over the base named in the config
                         (neither for a zero-shot judge: it reads its base unchanged)
    tokenizer/           the tokenizer, saved with save_pretrained (chat template included)
    head.safetensors     the head: the MLP, or the label words' rows of the LM head
    calibration.json     temperature and tie model (fitted on the validation fold), prior
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arenajudge.calibration import Calibration
from arenajudge.config import check_config
from arenajudge.errors import ConfigError, MissingDependencyError, ModelLoadError
from arenajudge.models.manifest import (
    config_from_manifest,
    read_manifest,
    schema_hash,
    write_manifest,
)
from arenajudge.models.transformer import packing
from arenajudge.models.transformer.basemodel import (
    check_positions,
    load_tokenizer,
    require_model_extra,
    resolve_base,
)
from arenajudge.models.transformer.config import PredictOptions, TransformerConfig
from arenajudge.outputs import atomic_path

if TYPE_CHECKING:
    from arenajudge.models.transformer.model import TransformerModel

HEAD_FILE = "head.safetensors"
CALIBRATION_FILE = "calibration.json"


def packing_schema(config: TransformerConfig, tokenizer: Any) -> str:
    """Hash of the input layout: a model only reads inputs packed the way it was trained
    (with a chat template, its task, question and the template's frame too)."""
    parts = [
        packing.PROMPT_MARKER,
        packing.RESPONSE_MARKER,
        packing.RESPONSE_A_MARKER,
        packing.RESPONSE_B_MARKER,
        packing.TURN_SEPARATOR,
        str(config.max_length),
        str(config.prompt_share),
    ]
    if config.prompt_format == "chat":
        parts += [
            "chat",
            packing.CHAT_TASK,
            packing.CHAT_QUESTION,
            *(packing.chat_frame(tokenizer) or ("no template",)),
        ]
    return schema_hash(parts)


def write_bundle(model: TransformerModel, path: str | Path, force: bool) -> None:
    """Write ``model``'s MODEL_DIR at ``path`` atomically (see the module docstring)."""
    from safetensors.torch import save_file

    with atomic_path(path, force, kind="directory", output="model") as staged:
        staged.mkdir()
        net: Any = model.net_
        body: Any = net.body
        if model.config.merge_lora:
            body = net.body = body.merge_and_unload()
        if not model.config.zero_shot:  # a zero-shot judge is its base, unchanged
            body.save_pretrained(staged / ("adapter" if hasattr(body, "peft_config") else "body"))
        model.tokenizer_.save_pretrained(staged / "tokenizer")
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in net.head.state_dict().items()},
            staged / HEAD_FILE,
        )
        model.calibration_.save(staged / CALIBRATION_FILE)
        write_manifest(
            staged,
            backend=model.backend,
            config=asdict(model.config),
            feature_schema=packing_schema(model.config, model.tokenizer_),
            training={
                **model.training_,
                "truncation": model.truncation_,
                "history": model.history_,
            },
            metrics={"validation": model.validation_},
        )


def read_bundle(
    cls: type[TransformerModel], path: Path, options: PredictOptions
) -> TransformerModel:
    """The model of class ``cls`` saved at ``path``, with prediction-time ``options``."""
    check_config(options)
    manifest = read_manifest(path, backend=cls.backend, verify=True)
    trained = config_from_manifest(manifest, TransformerConfig, path)
    if trained.prompt_format == "auto":  # saved before prompt formats: the plain layout
        trained = replace(trained, prompt_format="plain")
    # training-only switches do not apply to prediction
    config = replace(trained, gradient_checkpointing=False, merge_lora=False, **options.overrides())
    check_config(config)
    try:
        require_model_extra(config)
    except MissingDependencyError as exc:
        raise MissingDependencyError(f"loading {path}: {exc}") from None
    model = cls(config)
    model.tokenizer_ = load_tokenizer(path / "tokenizer", "model")
    if manifest.get("feature_schema") != packing_schema(trained, model.tokenizer_):
        raise ModelLoadError(
            "was trained with another input layout than this arenajudge packs; retrain the model",
            file=path,
        )
    training = manifest.get("training", {})
    model.truncation_ = training.get("truncation", {})
    model.history_ = training.get("history", [])
    model.training_ = {k: v for k, v in training.items() if k not in ("truncation", "history")}
    model.validation_ = manifest.get("metrics", {}).get("validation", {})
    model.predict_options_ = options
    model.net_ = _load_network(model, path)
    model.calibration_ = Calibration.load(path / CALIBRATION_FILE)
    return model


def _base_path(model: TransformerModel, path: Path, why: str) -> Path:
    """The base model a bundle reads (``why``: an adapter over it, or a zero-shot
    judge), where it was trained or at predict-time ``--base``; a GGUF base must have
    the bytes it was trained with."""
    config = model.config
    recorded = model.training_.get("base", {})
    try:
        source = resolve_base(config.base, model.kind, sha256=recorded.get("sha256"))
    except ConfigError as exc:
        raise ModelLoadError(
            f"{why} --base {config.base}, which is gone or cannot be "
            f"loaded ({exc}); put the base model back there, give its new "
            "place with --base MODEL"
            + (
                ", or retrain with --merge-lora for a self-contained bundle"
                if not config.zero_shot
                else ""
            ),
            file=path,
        ) from None
    return source.path


def _load_network(model: TransformerModel, path: Path) -> Any:
    """The saved body (or base + adapter, or the base alone for a zero-shot judge) and
    head, on the inference device."""
    from safetensors.torch import load_file

    from arenajudge.models.transformer import networks

    config = model.config
    if (path / "adapter").is_dir():
        base = _base_path(model, path, "holds a LoRA adapter over")
        body = networks.load_adapter(
            networks.load_body(base, config, model.decoder), path / "adapter"
        )
    elif config.zero_shot:
        base = _base_path(model, path, "is a zero-shot judge of")
        body = networks.load_body(base, config, model.decoder)
    elif (path / "body").is_dir():
        base = path / "body"
        body = networks.load_body(base, config, model.decoder)
    else:
        raise ModelLoadError(
            "has neither body/ nor adapter/; the model directory is incomplete", file=path
        )
    check_positions(body, config.max_length, base)
    net = model._network(body, base, adapters=False, label_rows=False)
    try:
        net.head.load_state_dict(load_file(path / HEAD_FILE))
    except (OSError, RuntimeError) as exc:
        raise ModelLoadError(
            f"has an unusable {HEAD_FILE} ({exc}); retrain the model", file=path
        ) from None
    return model._placed(net)
