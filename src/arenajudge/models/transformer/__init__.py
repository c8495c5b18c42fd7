"""Transformer preference models (``pip install arenajudge[transformers]``).

``siamese`` and ``cross`` fine-tune an encoder (DeBERTa-v3, BERT, ...); ``llm`` puts
LoRA adapters and a 3-class head on a decoder LM (Llama, Gemma-2, Qwen2, Mistral).
Importing this package does not import torch; fitting or loading a model does.
"""

from __future__ import annotations

import os
from typing import Any

from arenajudge.errors import ConfigError
from arenajudge.models.transformer.config import KINDS, TransformerConfig
from arenajudge.models.transformer.model import (MODELS, CrossModel, LLMModel, SiameseModel,
                                                 TransformerModel, require_model_extra,
                                                 resolve_base)

BACKENDS = KINDS
"""The manifest ``backend`` names of the transformer models, one per ``--model`` kind."""


def build_model(kind: str, options: dict[str, Any]) -> TransformerModel:
    """An unfitted ``kind`` model (siamese, cross or llm) from CLI option values.

    ``options`` keys are :class:`TransformerConfig` fields (``base``, ``max_length``,
    ``epochs``, ``lr``, ``lora_r``, ``load_in``, ``device``, ``seed``, ...); ``None``
    values keep the defaults. Fails fast, before any data is read, on unknown or
    out-of-range options, a missing extra, or a ``base`` that is no Hugging Face model
    directory or does not fit ``kind``. No weights are loaded until ``fit``.
    """
    if kind not in MODELS:
        raise ConfigError(f"--model {kind} is not a transformer backend; use one of "
                          f"{', '.join(KINDS)}")
    config = TransformerConfig.from_dict({**options, "kind": kind})
    config.validate()
    require_model_extra(config)
    resolve_base(config.base, kind)
    return MODELS[kind](config)


def is_main_process() -> bool:
    """False in the non-zero ranks of ``accelerate launch`` / ``torchrun``: they train
    too, but only rank 0 should write outputs or print."""
    return int(os.environ.get("RANK", "0")) == 0


__all__ = ["BACKENDS", "CrossModel", "LLMModel", "SiameseModel", "MODELS",
           "TransformerConfig", "TransformerModel", "build_model", "is_main_process"]
