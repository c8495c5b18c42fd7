"""The ``--base`` model: resolved (a directory, hub id or GGUF file) and checked before
any weights load, its tokenizer and the sequence length its positions allow."""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any

from arenajudge.errors import ConfigError, MissingDependencyError
from arenajudge.model_sources import ModelSource, resolve_model
from arenajudge.models.transformer.config import TransformerConfig


def require_extra(purpose: str, *, peft: bool = False) -> None:
    """Raise MissingDependencyError unless the ``transformers`` extra is importable.

    ``purpose`` names what needs it in the message (``--backend siamese``, ``embed``).
    """
    # On CPUs with AVX512-BF16, bitsandbytes 0.50 tries to fetch a faster 4-bit kernel
    # from the hub when peft or transformers import it, and warns when it may not
    # (untrusted, or offline); its own kernel then runs, so the warning is only noise.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    needed = ["torch", "transformers", "accelerate"] + (["peft"] if peft else [])
    missing = []
    for name in needed:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingDependencyError(
            f"{purpose} needs {', '.join(needed)}; {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed. Install them with "
            "`pip install arenajudge[transformers]`"
        )


def is_decoder_lm(model_type: str) -> bool:
    """True for decoder-only LMs (Llama, Gemma-2, Qwen2, Mistral, ...): they have a
    causal-LM head class and no masked-LM one, unlike BERT-style encoders."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    return (
        model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )


def hf_model_dir(
    base: str | None, purpose: str, *, sha256: str | None = None
) -> tuple[ModelSource, str, bool]:
    """``--base`` resolved (a directory, hub id or GGUF file, see
    :mod:`arenajudge.model_sources`) and checked to be a Hugging Face model: its source,
    model type and whether it is a decoder LM. Needs transformers (see
    :func:`require_extra`); ``sha256`` pins a GGUF file's bytes."""
    if not base:
        raise ConfigError(
            f"{purpose} needs --base MODEL: a local Hugging Face model "
            "directory, a hub id (org/name, e.g. google/gemma-2-9b-it) or a "
            ".gguf file"
        )
    source = resolve_model(base, "--base", sha256=sha256)
    path = source.path
    try:
        hf_config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(
            f"--base {base} is not a Hugging Face model directory (no "
            "readable config.json); save one with save_pretrained() or "
            "`hf download NAME --local-dir DIR`"
        ) from None
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ConfigError(
            f"--base {base} has no weights (*.safetensors); download the full model into it"
        )
    model_type = str(hf_config.get("model_type", "?"))
    if hf_config.get("is_encoder_decoder"):
        raise ConfigError(
            f"--base {base} holds an encoder-decoder model ({model_type}); "
            "use an encoder (siamese, cross) or a decoder LM (llm)"
        )
    return source, model_type, is_decoder_lm(model_type)


def resolve_base(base: str | None, kind: str, *, sha256: str | None = None) -> ModelSource:
    """``--base`` resolved and checked to hold a model that fits ``kind``."""
    source, model_type, decoder = hf_model_dir(base, f"--backend {kind}", sha256=sha256)
    if kind == "llm" and not decoder:
        raise ConfigError(
            f"--base {base} holds a {model_type} model, not a decoder LM; "
            "--backend llm needs a Llama, Gemma-2, Qwen2 or Mistral-family "
            "model (use --backend siamese or cross for encoders)"
        )
    if kind != "llm" and decoder:
        raise ConfigError(
            f"--base {base} holds a decoder LM ({model_type}); use --backend "
            f"llm for it, or an encoder such as DeBERTa-v3 for --backend {kind}"
        )
    return source


def require_model_extra(config: TransformerConfig) -> None:
    """The extras ``config`` needs are installed, and bitsandbytes can quantize where the
    weights would live."""
    require_extra(f"--backend {config.kind}", peft=config.uses_lora)
    from arenajudge.models.transformer import devices

    devices.check_quantized(config.load_in, config.device)


def load_tokenizer(path: Path, what: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{what} {path} has no usable tokenizer ({exc})") from None


def usable_positions(body: Any) -> int | None:
    """The longest sequence an encoder with absolute position embeddings reads (None for
    relative or rotary positions: DeBERTa-v3, decoder LMs). RoBERTa and XLM-R number
    positions from ``padding_idx + 1``, so they read 2 fewer than
    ``max_position_embeddings`` (514 -> 512)."""
    config = body.config
    limit = getattr(config, "max_position_embeddings", None)
    if (
        limit is None
        or not getattr(config, "position_biased_input", True)
        or is_decoder_lm(str(getattr(config, "model_type", "")))
    ):
        return None
    padding_idx = getattr(getattr(body, "embeddings", None), "padding_idx", None)
    return limit - (padding_idx + 1 if padding_idx is not None else 0)


def check_positions(body: Any, max_length: int, base: Path) -> None:
    """ConfigError when ``max_length`` is beyond what the body's positions allow."""
    limit = usable_positions(body)
    if limit is not None and max_length > limit:
        raise ConfigError(
            f"--max-length {max_length} exceeds the {limit} positions of "
            f"--base {base}; use --max-length {limit}"
        )
