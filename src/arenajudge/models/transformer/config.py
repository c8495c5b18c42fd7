"""Hyper-parameters of the transformer backends: one frozen dataclass, every field with help.

CLI flags (``arenajudge train --model siamese --lr 3e-5 ...``) and YAML/TOML keys map
onto these fields by name; unknown keys are errors. The resolved config is written
into every saved model's manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from arenajudge.errors import ConfigError

KINDS = ("siamese", "cross", "llm")
LOAD_IN = ("16bit", "8bit", "4bit")
SCHEDULES = ("cosine", "linear")
LOSSES = ("auto", "ce", "kl")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DEVICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_LR = {"siamese": 2e-5, "cross": 2e-5, "llm": 1e-4}
"""Full fine-tuning of an encoder wants a small step; LoRA adapters a larger one."""
MIN_MAX_LENGTH = 32


def _help(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class TransformerConfig:
    """Everything that decides how a transformer preference model is built and trained."""

    kind: str = _help("siamese", "Network layout: siamese (one shared encoder over prompt+A "
                      "and prompt+B), cross (one sequence prompt/A/B) or llm (decoder LM "
                      "with LoRA, last-token head).")
    base: str | None = _help(None, "A local Hugging Face model directory (config.json, "
                             "weights, tokenizer).")
    max_length: int = _help(512, "Tokens per input sequence, special tokens included.")
    prompt_share: float = _help(0.3, "Share of the token budget reserved for the prompt "
                                "when the responses need the rest (0 < share <= 0.5).")
    epochs: int = _help(1, "Passes over the (swap-augmented) training set.")
    max_steps: int = _help(0, "Stop after this many optimizer steps; 0 = no limit.")
    batch_size: int = _help(8, "Battles per device per forward pass.")
    grad_accum: int = _help(1, "Forward passes accumulated per optimizer step.")
    lr: float | None = _help(None, "Peak learning rate; default 2e-5 for siamese/cross, "
                             "1e-4 for llm (LoRA).")
    weight_decay: float = _help(0.01, "AdamW decoupled weight decay.")
    warmup_ratio: float = _help(0.1, "Share of the steps spent warming the learning rate "
                                "up from 0.")
    schedule: str = _help("cosine", "Learning-rate decay after warmup: cosine or linear, to 0.")
    max_grad_norm: float = _help(1.0, "Gradient clipping norm; 0 turns clipping off.")
    head_hidden: int = _help(256, "Width of the MLP head's hidden layer.")
    head_dropout: float = _help(0.1, "Dropout before each layer of the head.")
    loss: str = _help("auto", "ce: cross-entropy on the arg-max label; kl: KL divergence "
                      "to the label probabilities (distillation, pseudo-labels); auto: kl "
                      "when any label is soft, else ce.")
    swap_augment: bool = _help(True, "Train on every battle in both A/B orders.")
    symmetric: bool = _help(True, "Predict the mean of p(A,B) and the swapped p(B,A).")
    val_fraction: float = _help(0.1, "Share of prompts held out (prompt-grouped) to pick "
                                "the best checkpoint; 0 keeps the last weights.")
    eval_every: int = _help(0, "Evaluate (and checkpoint) every N optimizer steps; 0 = at "
                            "the end of each epoch.")
    patience: int = _help(0, "Stop after this many evaluations without a better "
                          "validation log loss; 0 = never stop early.")
    checkpoint_dir: str | None = _help(None, "Directory for resume checkpoints; rerunning "
                                       "with the same directory resumes an interrupted run.")
    lora_r: int = _help(16, "LoRA rank (llm only).")
    lora_alpha: int = _help(32, "LoRA scaling alpha (llm only).")
    lora_dropout: float = _help(0.05, "Dropout on the LoRA input (llm only).")
    lora_targets: str = _help("all-linear", "Comma-separated module names that get LoRA "
                              "adapters, or all-linear (llm only).")
    load_in: str = _help("16bit", "Base weights precision (llm only): 16bit, or 8bit/4bit "
                         "through bitsandbytes (QLoRA, needs a CUDA GPU).")
    gradient_checkpointing: bool = _help(False, "Recompute activations in the backward pass "
                                         "to save memory.")
    merge_lora: bool = _help(False, "Save merged full weights instead of the LoRA adapter "
                             "(llm, 16bit only); a merged bundle no longer needs --base.")
    precision: str = _help("auto", "Autocast dtype: auto (bf16 where the GPU supports it, "
                           "else fp16 on GPU, fp32 on CPU), bf16, fp16 or fp32.")
    device: str = _help("auto", "auto, cpu, cuda or mps; under `accelerate launch` the "
                        "launcher decides.")
    seed: int = _help(0, "Seed of weight initialisation, data order and validation split.")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TransformerConfig":
        """Build from a mapping (CLI flags, YAML/TOML), refusing unknown keys.

        ``None`` values mean "not given" and keep the default.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown transformer option(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**{k: v for k, v in values.items() if v is not None})

    @property
    def learning_rate(self) -> float:
        return DEFAULT_LR[self.kind] if self.lr is None else self.lr

    def validate(self) -> None:
        """Raise ConfigError naming the first out-of-range field."""
        choices = {"kind": KINDS, "load_in": LOAD_IN, "schedule": SCHEDULES,
                   "loss": LOSSES, "precision": PRECISIONS, "device": DEVICES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got "
                                  f"{getattr(self, name)!r}")
        checks = {
            "max_length": self.max_length >= MIN_MAX_LENGTH,
            "prompt_share": 0 < self.prompt_share <= 0.5,
            "epochs": self.epochs >= 1,
            "max_steps": self.max_steps >= 0,
            "batch_size": self.batch_size >= 1,
            "grad_accum": self.grad_accum >= 1,
            "lr": self.learning_rate > 0,
            "weight_decay": self.weight_decay >= 0,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "max_grad_norm": self.max_grad_norm >= 0,
            "head_hidden": self.head_hidden >= 1,
            "head_dropout": 0 <= self.head_dropout < 1,
            "val_fraction": 0 <= self.val_fraction <= 0.5,
            "eval_every": self.eval_every >= 0,
            "patience": self.patience >= 0,
            "lora_r": self.lora_r >= 1,
            "lora_alpha": self.lora_alpha >= 1,
            "lora_dropout": 0 <= self.lora_dropout < 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r} is out of range; see "
                                  "`arenajudge train --help` for allowed values")
        if self.kind != "llm" and self.load_in != "16bit":
            raise ConfigError(f"--load-in {self.load_in} is for --model llm only; "
                              f"--model {self.kind} fine-tunes full-precision weights")
        if self.merge_lora and (self.kind != "llm" or self.load_in != "16bit"):
            raise ConfigError("--merge-lora needs --model llm with --load-in 16bit "
                              "(quantized weights cannot be merged losslessly)")
