"""Settings of the transformer backends, split the way TRL splits them.

:class:`NetworkConfig` is what defines the network (base model, head, LoRA, input
length); :class:`TrainingConfig` what defines one training run (optimiser, schedule,
precision, evaluation, checkpoints). :class:`TransformerConfig` is both at once: the
flat class a YAML/TOML file, the CLI flags and the manifest map onto by field name
(one loader, :mod:`arenajudge.config`), with :attr:`~TransformerConfig.network` and
:attr:`~TransformerConfig.training` handing each part to the code that uses it.
:class:`PredictOptions` overrides settings of a saved model when it is loaded to predict.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from arenajudge.config import option
from arenajudge.errors import ConfigError

KINDS = ("siamese", "cross", "llm")
LOAD_IN = ("16bit", "8bit", "4bit")
SCHEDULES = ("cosine", "linear")
LOSSES = ("auto", "ce", "kl")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DEVICES = ("auto", "cpu", "cuda", "mps")
HEADS = ("mlp", "tokens")
ATTENTION = ("auto", "eager", "sdpa", "flash_attention_2")
PROMPT_FORMATS = ("auto", "chat", "plain")
FULL_FINETUNE_LR, LORA_LR = 2e-5, 1e-4
"""Full fine-tuning of an encoder wants a small step; LoRA adapters a larger one."""
MIN_MAX_LENGTH = 32


@dataclass(frozen=True)
class NetworkConfig:
    """What the network is: its base model, input layout, head and adapters."""

    cli_title: ClassVar[str] = "Transformer network options"
    """Heading of these flags in ``--help`` (the CLI adds the backends they apply to)."""

    kind: str = option(
        "siamese",
        "Network layout: siamese (one shared encoder over prompt+A "
        "and prompt+B), cross (one sequence prompt/A/B) or llm (decoder LM "
        "with LoRA, last-token head).",
        choices=KINDS,
    )
    base: str | None = option(
        None,
        "The base model: a local Hugging Face model directory, "
        "a hub id (org/name[@revision], from the Hugging Face cache or "
        "downloaded) or a .gguf file; a sequence-classification "
        "checkpoint (e.g. a reward model) gives its backbone.",
    )
    max_length: int = option(
        512, "Tokens per input sequence, special tokens included.", low=MIN_MAX_LENGTH
    )
    prompt_share: float = option(
        0.3,
        "Share of the token budget reserved for the prompt when the responses need the rest.",
        low=0,
        high=0.5,
        low_open=True,
    )
    symmetric: bool = option(True, "Predict the mean of p(A,B) and the swapped p(B,A).")
    head: str = option(
        "mlp",
        "mlp: an MLP on the pooled states; tokens (llm only): the LM "
        "head's scores of the label words A, B and tie.",
        choices=HEADS,
    )
    zero_shot: bool = option(
        False,
        "Train nothing in the network (llm with --head tokens): "
        "read the base's own scores of A, B and tie and fit only the "
        "calibration on the data.",
    )
    prompt_format: str = option(
        "auto",
        "llm input: chat (the task, prompt and both "
        "responses in one user turn of the base's chat template), "
        "plain (marked text, no template) or auto (chat when the "
        "base has a template).",
        choices=PROMPT_FORMATS,
    )
    head_hidden: int = option(256, "Width of the MLP head's hidden layer.", low=1)
    head_dropout: float = option(
        0.1, "Dropout before each layer of the head.", low=0, high=1, high_open=True
    )
    lora: bool = option(
        False,
        "LoRA adapters on an encoder (siamese, cross) instead of full "
        "fine-tuning; llm always uses LoRA.",
    )
    lora_r: int = option(16, "LoRA rank.", low=1)
    lora_alpha: int = option(32, "LoRA scaling alpha.", low=1)
    lora_dropout: float = option(0.05, "Dropout on the LoRA input.", low=0, high=1, high_open=True)
    lora_targets: str = option(
        "all-linear", "Comma-separated module names that get LoRA adapters, or all-linear."
    )
    load_in: str = option(
        "16bit",
        "Base weights precision (llm only): 16bit, or 8bit/4bit "
        "through bitsandbytes (QLoRA; on the GPU, else on the CPU).",
        choices=LOAD_IN,
    )
    merge_lora: bool = option(
        False,
        "Save merged full weights instead of the LoRA adapter "
        "(16bit only); a merged bundle no longer needs --base.",
    )
    attn_implementation: str = option(
        "auto",
        "Attention kernel: auto (the model's default), "
        "eager, sdpa or flash_attention_2 (needs flash-attn "
        "and a GPU).",
        choices=ATTENTION,
    )

    @property
    def uses_lora(self) -> bool:
        return self.kind == "llm" or self.lora

    def check(self) -> None:
        """Cross-field rules (each field's own range is checked from its option)."""
        if self.kind != "llm" and self.load_in != "16bit":
            raise ConfigError(
                f"--load-in {self.load_in} is for --backend llm only; "
                f"--backend {self.kind} fine-tunes full-precision weights"
            )
        if self.merge_lora and (not self.uses_lora or self.load_in != "16bit"):
            raise ConfigError(
                "--merge-lora needs LoRA adapters (--backend llm, or --lora) "
                "with --load-in 16bit (quantized weights cannot be merged "
                "losslessly)"
            )
        if self.head == "tokens" and self.kind != "llm":
            raise ConfigError(
                "--head tokens needs --backend llm (a decoder LM's own head scores the label words)"
            )
        if self.zero_shot and (self.kind != "llm" or self.head != "tokens"):
            raise ConfigError(
                "--zero-shot needs --backend llm --head tokens (the base's "
                "own scores of the label words are the judge)"
            )
        if self.zero_shot and self.merge_lora:
            raise ConfigError(
                "--zero-shot trains no adapter, so there is none to merge; drop --merge-lora"
            )
        if self.prompt_format == "chat" and self.kind != "llm":
            raise ConfigError(
                "--prompt-format chat is for --backend llm; encoders read the plain layout"
            )


@dataclass(frozen=True)
class TrainingConfig:
    """How one training run goes: optimiser, schedule, precision, evaluation, checkpoints."""

    cli_title: ClassVar[str] = "Transformer training options"
    """Heading of these flags in ``--help`` (the CLI adds the backends they apply to)."""

    epochs: int = option(1, "Passes over the (swap-augmented) training set.", low=1)
    max_steps: int = option(0, "Stop after this many optimizer steps; 0 = no limit.", low=0)
    batch_size: int = option(8, "Battles per device per forward pass.", low=1)
    grad_accum: int = option(1, "Forward passes accumulated per optimizer step.", low=1)
    lr: float | None = option(
        None,
        "Peak learning rate; default 2e-5 for a fully "
        "fine-tuned encoder, 1e-4 with LoRA (llm, --lora).",
        low=0,
        low_open=True,
    )
    weight_decay: float = option(0.01, "AdamW decoupled weight decay.", low=0)
    warmup_ratio: float = option(
        0.1,
        "Share of the steps spent warming the learning rate up from 0.",
        low=0,
        high=1,
        high_open=True,
    )
    schedule: str = option("cosine", "Learning-rate decay after warmup, to 0.", choices=SCHEDULES)
    max_grad_norm: float = option(1.0, "Gradient clipping norm; 0 turns clipping off.", low=0)
    loss: str = option(
        "auto",
        "ce: cross-entropy on the arg-max label; kl: KL divergence "
        "to the label probabilities (distillation, pseudo-labels); auto: kl "
        "when any label is soft, else ce.",
        choices=LOSSES,
    )
    swap_augment: bool = option(True, "Train on every battle in both A/B orders.")
    val_fraction: float = option(
        0.1,
        "Share of prompts held out (prompt-grouped) to pick "
        "the best checkpoint; 0 keeps the last weights.",
        low=0,
        high=0.5,
    )
    eval_every: int = option(
        0, "Evaluate (and checkpoint) every N optimizer steps; 0 = at the end of each epoch.", low=0
    )
    patience: int = option(
        0,
        "Stop after this many evaluations without a better "
        "validation log loss; 0 = never stop early.",
        low=0,
    )
    checkpoint_dir: str | None = option(
        None,
        "Directory for resume checkpoints; rerunning "
        "with the same directory resumes an interrupted run.",
    )
    gradient_checkpointing: bool = option(
        False, "Recompute activations in the backward pass to save memory."
    )
    precision: str = option(
        "auto",
        "Autocast dtype (and a decoder's weights dtype on a "
        "GPU): auto (bf16 on GPUs that compute it natively, sm80+; fp16 "
        "on older GPUs such as the T4; fp32 on CPU), bf16, fp16 or fp32.",
        choices=PRECISIONS,
    )
    device: str = option(
        "auto",
        "auto, cpu, cuda or mps; under `accelerate launch` the launcher decides.",
        choices=DEVICES,
    )
    seed: int = option(
        0, "Seed of weight initialisation, data order and validation split.", low=0, high=2**31 - 1
    )


def _part(config: Any, part: type) -> Any:
    return part(**{spec.name: getattr(config, spec.name) for spec in fields(part)})


@dataclass(frozen=True)
class TransformerConfig(TrainingConfig, NetworkConfig):
    """Everything that decides how a transformer preference model is built and trained:
    the fields of :class:`NetworkConfig` and :class:`TrainingConfig`, flat."""

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return LORA_LR if self.uses_lora else FULL_FINETUNE_LR

    @property
    def network(self) -> NetworkConfig:
        return _part(self, NetworkConfig)

    @property
    def training(self) -> TrainingConfig:
        """The run's settings, with the learning rate resolved for this network."""
        return replace(_part(self, TrainingConfig), lr=self.learning_rate)


def parse_tta(value: str) -> float:
    """The share of rows that get the A/B-swapped pass: ``none`` 0, ``full`` 1,
    ``uncertain:F`` F (the F least certain rows of the first pass)."""
    if value == "none":
        return 0.0
    if value == "full":
        return 1.0
    name, _, share = value.partition(":")
    try:
        fraction = float(share)
    except ValueError:
        fraction = -1.0
    if name != "uncertain" or not 0 <= fraction <= 1:
        raise ConfigError(
            f"--tta {value!r}: expected none, full or uncertain:F with F in "
            "[0, 1] (e.g. uncertain:0.33)"
        )
    return fraction


@dataclass(frozen=True)
class PredictOptions:
    """Prediction-time overrides of a saved transformer model; None keeps what it was
    trained with."""

    cli_title: ClassVar[str] = "Transformer prediction options"
    """Heading of these flags in ``--help`` (the CLI adds the backends they apply to)."""

    base: str | None = option(
        None,
        "The base model where it is now (a directory, e.g. a "
        "Kaggle dataset path, a hub id or a .gguf file) instead of "
        "what it was trained from.",
    )
    batch_size: int | None = option(
        None, "Battles per forward pass; default twice the training batch size.", low=1
    )
    max_tokens_per_batch: int | None = option(
        None,
        "Build batches of length-sorted rows up "
        "to this many padded tokens instead of a "
        "fixed number of rows.",
        low=1,
    )
    max_length: int | None = option(
        None, "Tokens per input sequence (e.g. longer than trained).", low=MIN_MAX_LENGTH
    )
    load_in: str | None = option(
        None,
        "Base weights precision: 16bit, or 8bit/4bit through "
        "bitsandbytes, e.g. for a 16-bit-trained adapter.",
        choices=LOAD_IN,
    )
    device: str | None = option(None, "auto, cpu, cuda or mps.", choices=DEVICES)
    attn_implementation: str | None = option(
        None, "Attention kernel: auto, eager, sdpa or flash_attention_2.", choices=ATTENTION
    )
    tta: str | None = option(
        None,
        "A/B-swap test-time augmentation: none, full, or "
        "uncertain:F (the swapped pass only on the share F of rows the "
        "first pass is least sure about); default full for a symmetric "
        "model.",
    )

    def check(self) -> None:
        if self.tta is not None:
            parse_tta(self.tta)

    def overrides(self) -> dict[str, Any]:
        """The given fields that replace fields of the model's TransformerConfig."""
        replaced = ("base", "max_length", "load_in", "device", "attn_implementation")
        return {name: getattr(self, name) for name in replaced if getattr(self, name) is not None}
