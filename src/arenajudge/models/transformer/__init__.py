"""Transformer preference models (``pip install arenajudge[transformers]``).

``siamese`` and ``cross`` fine-tune an encoder (DeBERTa-v3, BERT, ...); ``llm`` puts
LoRA adapters and a 3-class head on a decoder LM (Llama, Gemma-2, Qwen2, Mistral).
Importing this package does not import torch; fitting or loading a model does. Build
one with :func:`arenajudge.models.registry.build_model`.
"""

from __future__ import annotations

import os

from arenajudge.models.transformer.config import (
    KINDS,
    NetworkConfig,
    PredictOptions,
    TrainingConfig,
    TransformerConfig,
)
from arenajudge.models.transformer.model import CrossModel, LLMModel, SiameseModel, TransformerModel


def is_main_process() -> bool:
    """False in the non-zero ranks of ``accelerate launch`` / ``torchrun``: they train
    too, but only rank 0 should write outputs or print."""
    return int(os.environ.get("RANK", "0")) == 0


__all__ = [
    "KINDS",
    "CrossModel",
    "LLMModel",
    "NetworkConfig",
    "PredictOptions",
    "SiameseModel",
    "TrainingConfig",
    "TransformerConfig",
    "TransformerModel",
    "is_main_process",
]
