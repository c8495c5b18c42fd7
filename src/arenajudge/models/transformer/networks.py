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
from arenajudge.features.pooling import mean_pool
from arenajudge.models.transformer import devices
from arenajudge.models.transformer.config import NetworkConfig, TransformerConfig


def segment_pool(
    hidden: torch.Tensor, mask: torch.Tensor, segments: torch.Tensor, n_segments: int = 3
) -> torch.Tensor:
    """Mean of each segment's tokens, concatenated: (n, L, H) -> (n, n_segments * H);
    zeros for an empty segment."""
    return torch.cat([mean_pool(hidden, mask * (segments == s)) for s in range(n_segments)], dim=-1)


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hidden state (n, H) of each row's last real token; rows are right-padded."""
    last = mask.sum(1).clamp(min=1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def mlp_head(in_size: int, hidden: int, dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(in_size, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, len(LABELS)),
    )


class PreferenceNet(nn.Module):
    """body -> pooled states of each sequence, concatenated -> head -> logits (B, 3).

    Parameters
    ----------
    body : nn.Module
        A Hugging Face base model (no task head) returning ``last_hidden_state``.
    head : nn.Module
        Pooled states (B, S*H, or 3H for segment pooling) -> logits (B, 3): an MLP
        (:func:`mlp_head`) or the LM head's rows of the label words (:func:`token_head`).
    pooling : {"mean", "segments", "last"}
    """

    def __init__(self, body: nn.Module, head: nn.Module, pooling: str) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.pooling = pooling

    @property
    def head_weight(self) -> torch.Tensor:
        return next(self.head.parameters())

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, segment_ids: torch.Tensor
    ) -> torch.Tensor:
        """``input_ids``, ``attention_mask``, ``segment_ids``: (B, S, L) -> logits (B, 3)."""
        batch, n_seq, length = input_ids.shape
        mask = attention_mask.reshape(batch * n_seq, length)
        hidden = self.body(
            input_ids=input_ids.reshape(batch * n_seq, length), attention_mask=mask
        ).last_hidden_state  # (B*S, L, H)
        if self.pooling == "segments":
            pooled = segment_pool(hidden, mask, segment_ids.reshape(batch * n_seq, length))
        elif self.pooling == "last":
            pooled = last_token_pool(hidden, mask)
        else:
            pooled = mean_pool(hidden, mask)
        pooled = pooled.reshape(batch, -1)  # (B, S*H) or (B, 3H)
        return self.head(pooled.to(self.head_weight.dtype))


def pooled_size(body: nn.Module, n_sequences: int, pooling: str) -> int:
    return n_sequences * hidden_size(body) * (3 if pooling == "segments" else 1)


def load_body(
    source: Path, config: TransformerConfig, decoder: bool, device_index: int | None = None
) -> nn.Module:
    """The base model in ``source`` (a Hugging Face directory), ready to fine-tune.

    ``device_index``: the GPU a quantized model is placed on (one per process; default
    this process's ``LOCAL_RANK``); without a GPU, quantized weights live on the CPU.
    """
    from transformers import AutoModel

    kwargs: dict[str, Any] = {"dtype": devices.body_dtype(config.precision, config.device, decoder)}
    if config.attn_implementation != "auto":
        kwargs["attn_implementation"] = config.attn_implementation
    if config.load_in != "16bit":
        devices.check_quantized(config.load_in, config.device)
        where = devices.quantized_device(config.device)
        if where.type == "cuda" and device_index is not None:
            where = torch.device("cuda", device_index)
        kwargs["quantization_config"] = devices.quantization(
            config.load_in, config.precision, where
        )
        kwargs["device_map"] = {"": str(where)}
    try:
        # a *ForSequenceClassification checkpoint (a reward model) loads as its backbone:
        # its task head's weights are left out
        body = AutoModel.from_pretrained(source, **kwargs)
    except (ValueError, ImportError) as exc:  # e.g. flash_attention_2 without flash-attn
        raise ConfigError(f"cannot load {source} ({str(exc).splitlines()[0]})") from None
    # Our pooling replaces the body's own pooler (BERT has one). Frozen, its unused
    # weights stay out of the optimizer and out of DistributedDataParallel's reduction
    # (which fails on trainable parameters that get no gradient).
    if getattr(body, "pooler", None) is not None:
        body.pooler.requires_grad_(False)
    if config.gradient_checkpointing:
        body.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return body


def add_lora(
    body: nn.Module, config: NetworkConfig, gradient_checkpointing: bool = False
) -> nn.Module:
    """Wrap a body with LoRA adapters; only the adapters stay trainable."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.load_in != "16bit":
        # without the kwargs peft turns checkpointing back to reentrant, which breaks
        # DistributedDataParallel ("marked ready twice")
        body = prepare_model_for_kbit_training(
            body,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    targets: str | list[str] = config.lora_targets
    if config.lora_targets != "all-linear":
        targets = [name.strip() for name in config.lora_targets.split(",") if name.strip()]
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        # the pooler is unused (frozen in load_body): no gradient
        exclude_modules=(r".*pooler.*" if getattr(body, "pooler", None) is not None else None),
        task_type="FEATURE_EXTRACTION",
    )
    try:
        return get_peft_model(body, lora)
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        raise ConfigError(f"--lora-targets {config.lora_targets}: {exc}") from None


def load_adapter(body: nn.Module, adapter_dir: Path) -> nn.Module:
    """A saved LoRA adapter on top of ``body``, for prediction."""
    from peft import PeftModel

    return PeftModel.from_pretrained(body, adapter_dir)


def hidden_size(body: nn.Module) -> int:
    # a transformers model's config; nn.Module types every attribute as a Tensor or Module
    config: Any = body.config
    return int(config.hidden_size)


LABEL_WORDS = ("A", "B", "tie")
"""The words whose LM-head scores are the logits of ``--head tokens``, in LABELS order."""


def label_token_ids(tokenizer: Any) -> list[int]:
    """The first token of each label word; ConfigError unless they are distinct."""
    ids = [tokenizer(word, add_special_tokens=False)["input_ids"][:1] for word in LABEL_WORDS]
    firsts = [first[0] for first in ids if first]
    if len(set(firsts)) != len(LABEL_WORDS):
        raise ConfigError(
            f"--head tokens: the tokenizer does not start the label words "
            f"{', '.join(LABEL_WORDS)} with distinct tokens; use --head mlp"
        )
    return firsts


def _lm_head_weight(source: Path, body: nn.Module) -> torch.Tensor:
    """The LM head's weight (V, H) of the causal LM saved in ``source``."""
    from safetensors import safe_open

    if getattr(body.config, "tie_word_embeddings", False):
        # a transformers model's method, which nn.Module's attribute types do not know
        input_embeddings: Any = body.get_input_embeddings
        return input_embeddings().weight.detach()
    for file in sorted(source.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as weights:
            if "lm_head.weight" in weights.keys():  # noqa: SIM118 (a safe_open handle, not a dict)
                return weights.get_tensor("lm_head.weight")
    raise ConfigError(
        f"--head tokens needs --base {source} to be a causal LM with its LM "
        "head (lm_head.weight), e.g. saved from *ForCausalLM; use --head mlp"
    )


def label_rows(source: Path, body: nn.Module, tokenizer: Any) -> torch.Tensor:
    """The rows (3, H) of the LM head of ``source`` that score the label words."""
    return _lm_head_weight(source, body)[label_token_ids(tokenizer)]


def token_head(body: nn.Module, rows: torch.Tensor | None = None) -> nn.Module:
    """A linear layer (H -> 3) starting from the LM head's ``rows`` of the label words
    (:func:`label_rows`; uninitialised when None, to load saved weights into): its
    logits are what the LM itself scores "A", "B" and "tie" at the last token."""
    head = nn.Linear(hidden_size(body), len(LABELS), bias=False)
    if rows is not None:
        with torch.no_grad():
            head.weight.copy_(rows.float())
    return head
