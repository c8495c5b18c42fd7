"""Hyper-parameters of the transformer backends: one frozen dataclass, every field with help.

CLI flags (``arenajudge train --backend siamese --lr 3e-5 ...``) and YAML/TOML keys map
onto these fields by name; unknown keys are errors. The resolved config is written
into every saved model's manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

from arenajudge.config import option
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


@dataclass(frozen=True)
class TransformerConfig:
    """Everything that decides how a transformer preference model is built and trained."""

    kind: str = option("siamese", "Network layout: siamese (one shared encoder over prompt+A "
                      "and prompt+B), cross (one sequence prompt/A/B) or llm (decoder LM "
                      "with LoRA, last-token head).", choices=KINDS)
    base: str | None = option(None, "A local Hugging Face model directory (config.json, "
                             "weights, tokenizer).")
    max_length: int = option(512, "Tokens per input sequence, special tokens included.",
                             low=MIN_MAX_LENGTH)
    prompt_share: float = option(0.3, "Share of the token budget reserved for the prompt "
                                "when the responses need the rest.", low=0, high=0.5,
                                low_open=True)
    epochs: int = option(1, "Passes over the (swap-augmented) training set.", low=1)
    max_steps: int = option(0, "Stop after this many optimizer steps; 0 = no limit.", low=0)
    batch_size: int = option(8, "Battles per device per forward pass.", low=1)
    grad_accum: int = option(1, "Forward passes accumulated per optimizer step.", low=1)
    lr: float | None = option(None, "Peak learning rate; default 2e-5 for siamese/cross, "
                             "1e-4 for llm (LoRA).", low=0, low_open=True)
    weight_decay: float = option(0.01, "AdamW decoupled weight decay.", low=0)
    warmup_ratio: float = option(0.1, "Share of the steps spent warming the learning rate "
                                "up from 0.", low=0, high=1, high_open=True)
    schedule: str = option("cosine", "Learning-rate decay after warmup, to 0.",
                           choices=SCHEDULES)
    max_grad_norm: float = option(1.0, "Gradient clipping norm; 0 turns clipping off.", low=0)
    head_hidden: int = option(256, "Width of the MLP head's hidden layer.", low=1)
    head_dropout: float = option(0.1, "Dropout before each layer of the head.", low=0, high=1,
                                 high_open=True)
    loss: str = option("auto", "ce: cross-entropy on the arg-max label; kl: KL divergence "
                      "to the label probabilities (distillation, pseudo-labels); auto: kl "
                      "when any label is soft, else ce.", choices=LOSSES)
    swap_augment: bool = option(True, "Train on every battle in both A/B orders.")
    symmetric: bool = option(True, "Predict the mean of p(A,B) and the swapped p(B,A).")
    val_fraction: float = option(0.1, "Share of prompts held out (prompt-grouped) to pick "
                                "the best checkpoint; 0 keeps the last weights.", low=0, high=0.5)
    eval_every: int = option(0, "Evaluate (and checkpoint) every N optimizer steps; 0 = at "
                            "the end of each epoch.", low=0)
    patience: int = option(0, "Stop after this many evaluations without a better "
                          "validation log loss; 0 = never stop early.", low=0)
    checkpoint_dir: str | None = option(None, "Directory for resume checkpoints; rerunning "
                                       "with the same directory resumes an interrupted run.")
    lora_r: int = option(16, "LoRA rank (llm only).", low=1)
    lora_alpha: int = option(32, "LoRA scaling alpha (llm only).", low=1)
    lora_dropout: float = option(0.05, "Dropout on the LoRA input (llm only).", low=0,
                                 high=1, high_open=True)
    lora_targets: str = option("all-linear", "Comma-separated module names that get LoRA "
                              "adapters, or all-linear (llm only).")
    load_in: str = option("16bit", "Base weights precision (llm only): 16bit, or 8bit/4bit "
                         "through bitsandbytes (QLoRA, needs a CUDA GPU).", choices=LOAD_IN)
    gradient_checkpointing: bool = option(False, "Recompute activations in the backward pass "
                                         "to save memory.")
    merge_lora: bool = option(False, "Save merged full weights instead of the LoRA adapter "
                             "(llm, 16bit only); a merged bundle no longer needs --base.")
    precision: str = option("auto", "Autocast dtype: auto (bf16 where the GPU supports it, "
                           "else fp16 on GPU, fp32 on CPU), bf16, fp16 or fp32.",
                           choices=PRECISIONS)
    device: str = option("auto", "auto, cpu, cuda or mps; under `accelerate launch` the "
                        "launcher decides.", choices=DEVICES)
    seed: int = option(0, "Seed of weight initialisation, data order and validation split.",
                       low=0, high=2**31 - 1)

    @property
    def learning_rate(self) -> float:
        return DEFAULT_LR[self.kind] if self.lr is None else self.lr

    def check(self) -> None:
        """Cross-field rules (each field's own range is checked from its option)."""
        if self.kind != "llm" and self.load_in != "16bit":
            raise ConfigError(f"--load-in {self.load_in} is for --backend llm only; "
                              f"--backend {self.kind} fine-tunes full-precision weights")
        if self.merge_lora and (self.kind != "llm" or self.load_in != "16bit"):
            raise ConfigError("--merge-lora needs --backend llm with --load-in 16bit "
                              "(quantized weights cannot be merged losslessly)")
