"""Torch modules of the transformer backends: a body, pooling and a 3-class head.

One network serves all three layouts: its input is (battles, sequences, tokens)
with 2 sequences per battle for siamese (prompt+A, prompt+B through one shared
body, each mean-pooled, concatenated) and 1 for cross and llm. The cross encoder
mean-pools the prompt, response A and response B tokens separately and concatenates
them (one pooled vector of the whole sequence hardly tells which words belong to A);
decoder LMs read their last token, which has attended to everything.

This module imports torch at the top: import it only once the ``transformers`` extra
is known to be present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from arenajudge.data.schema import LABELS
from arenajudge.errors import ConfigError
from arenajudge.models.transformer.config import TransformerConfig


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (n, L, H) over the tokens where ``mask`` (n, L) is 1 -> (n, H)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def segment_pool(hidden: torch.Tensor, mask: torch.Tensor, segments: torch.Tensor,
                 n_segments: int = 3) -> torch.Tensor:
    """Mean of each segment's tokens, concatenated: (n, L, H) -> (n, n_segments * H);
    zeros for an empty segment."""
    return torch.cat([mean_pool(hidden, mask * (segments == s)) for s in range(n_segments)],
                     dim=-1)


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hidden state (n, H) of each row's last real token; rows are right-padded."""
    last = mask.sum(1).clamp(min=1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class PreferenceNet(nn.Module):
    """body -> pooled states of each sequence, concatenated -> MLP head -> logits (B, 3).

    Parameters
    ----------
    body : nn.Module
        A Hugging Face base model (no task head) returning ``last_hidden_state``.
    hidden_size : int
        The body's hidden size H.
    n_sequences : int
        Sequences per battle S: 2 (siamese) or 1.
    pooling : {"mean", "segments", "last"}
    head_hidden : int
    dropout : float
    """

    def __init__(self, body: nn.Module, hidden_size: int, n_sequences: int, pooling: str,
                 head_hidden: int, dropout: float) -> None:
        super().__init__()
        self.body = body
        self.pooling = pooling
        pooled_size = n_sequences * hidden_size * (3 if pooling == "segments" else 1)
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(pooled_size, head_hidden), nn.GELU(),
            nn.Dropout(dropout), nn.Linear(head_hidden, len(LABELS)))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                segment_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids``, ``attention_mask``, ``segment_ids``: (B, S, L) -> logits (B, 3)."""
        batch, n_seq, length = input_ids.shape
        mask = attention_mask.reshape(batch * n_seq, length)
        hidden = self.body(input_ids=input_ids.reshape(batch * n_seq, length),
                           attention_mask=mask).last_hidden_state  # (B*S, L, H)
        if self.pooling == "segments":
            pooled = segment_pool(hidden, mask, segment_ids.reshape(batch * n_seq, length))
        elif self.pooling == "last":
            pooled = last_token_pool(hidden, mask)
        else:
            pooled = mean_pool(hidden, mask)
        pooled = pooled.reshape(batch, -1)  # (B, S*H) or (B, 3H)
        return self.head(pooled.to(self.head[1].weight.dtype))


def _body_dtype(config: TransformerConfig, decoder: bool) -> torch.dtype:
    """Decoder LMs are loaded in 16 bits on a GPU (LoRA trains them in place); encoders
    are fully fine-tuned and keep fp32 master weights under autocast."""
    if not decoder or not torch.cuda.is_available() or config.device in ("cpu", "mps"):
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _quantization(load_in: str) -> Any:
    from transformers import BitsAndBytesConfig

    if load_in == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute)


def load_body(source: Path, config: TransformerConfig, decoder: bool,
              device_index: int = 0) -> nn.Module:
    """The base model in ``source`` (a Hugging Face directory), ready to fine-tune.

    ``device_index``: the GPU a quantized model is placed on (one per process).
    """
    from transformers import AutoModel

    kwargs: dict[str, Any] = {"dtype": _body_dtype(config, decoder)}
    if config.load_in != "16bit":
        kwargs["quantization_config"] = _quantization(config.load_in)
        kwargs["device_map"] = {"": device_index}
    body = AutoModel.from_pretrained(source, **kwargs)
    # Our pooling replaces the body's own pooler (BERT has one). Frozen, its unused
    # weights stay out of the optimizer and out of DistributedDataParallel's reduction
    # (which fails on trainable parameters that get no gradient).
    if getattr(body, "pooler", None) is not None:
        body.pooler.requires_grad_(False)
    if config.gradient_checkpointing:
        body.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return body


def add_lora(body: nn.Module, config: TransformerConfig) -> nn.Module:
    """Wrap a decoder body with LoRA adapters; only the adapters stay trainable."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.load_in != "16bit":
        body = prepare_model_for_kbit_training(
            body, use_gradient_checkpointing=config.gradient_checkpointing)
    targets: str | list[str] = config.lora_targets
    if targets != "all-linear":
        targets = [name.strip() for name in targets.split(",") if name.strip()]
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=targets,
                      task_type="FEATURE_EXTRACTION")
    try:
        return get_peft_model(body, lora)
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        raise ConfigError(f"--lora-targets {config.lora_targets}: {exc}") from None


def load_adapter(body: nn.Module, adapter_dir: Path) -> nn.Module:
    """A saved LoRA adapter on top of ``body``, for prediction."""
    from peft import PeftModel

    return PeftModel.from_pretrained(body, adapter_dir)


def hidden_size(body: nn.Module) -> int:
    return int(body.config.hidden_size)
