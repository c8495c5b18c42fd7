"""The transformer preference models: siamese, cross and llm.

They differ in class attributes: how many sequences a battle becomes (``pair``),
whether the body is a decoder LM with LoRA adapters (``decoder``), how hidden
states are pooled (``pooling``) and the manifest ``backend`` name. torch, transformers,
accelerate and peft are imported only inside ``fit`` and ``load``.

MODEL_DIR layout::

    manifest.json        backend, resolved TransformerConfig, label order, packing schema,
                         training data summary, truncation statistics, history
    body/                fine-tuned (or LoRA-merged) weights: config.json + *.safetensors
    adapter/             or, for an unmerged LoRA: adapter_config.json +
                         adapter_model.safetensors over the base named in the config
    tokenizer/           the tokenizer, saved with save_pretrained
    head.safetensors     the MLP head
    calibration.json     temperature and tie model (fitted on the validation fold), prior
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from arenajudge.calibration import CALIBRATION_FOLDS, Calibration, fit_calibration
from arenajudge.data.folds import holdout_mask, prompt_groups
from arenajudge.data.schema import LABELS, Battles, swap_proba
from arenajudge.errors import ConfigError, MissingDependencyError, ModelLoadError
from arenajudge.config import check_config
from arenajudge.models.contract import PreferenceModel, check_labelled, check_sample_weight
from arenajudge.models.manifest import (config_from_manifest, data_summary, read_manifest,
                                        schema_hash, write_manifest)
from arenajudge.models.transformer import packing
from arenajudge.models.transformer.config import TransformerConfig
from arenajudge.models.transformer.packing import Packer, Samples, pad_token_id
from arenajudge.outputs import atomic_path

logger = logging.getLogger(__name__)

HEAD_FILE = "head.safetensors"
CALIBRATION_FILE = "calibration.json"


# ----------------------------------------------------------------- checks before work
def require_extra(purpose: str, *, peft: bool = False, load_in: str = "16bit") -> None:
    """Raise MissingDependencyError unless the ``transformers`` extra is importable.

    ``purpose`` names what needs it in the message (``--backend siamese``, ``embed``).
    """
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
            "`pip install arenajudge[transformers]`")
    if load_in != "16bit" and importlib.util.find_spec("bitsandbytes") is None:
        raise MissingDependencyError(
            f"--load-in {load_in} needs bitsandbytes, which is not installed; install it "
            "with `pip install bitsandbytes` (it needs a CUDA GPU), or use --load-in 16bit")


def is_decoder_lm(model_type: str) -> bool:
    """True for decoder-only LMs (Llama, Gemma-2, Qwen2, Mistral, ...): they have a
    causal-LM head class and no masked-LM one, unlike BERT-style encoders."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    return (model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES)


def hf_model_dir(base: str | None, purpose: str) -> tuple[Path, str, bool]:
    """``--base`` checked to be a local Hugging Face model directory: its absolute path,
    model type and whether it is a decoder LM. Needs transformers (see
    :func:`require_extra`)."""
    if not base:
        raise ConfigError(f"{purpose} needs --base DIR, a local Hugging Face model "
                          "directory (for example one made with `hf download "
                          "microsoft/deberta-v3-large --local-dir DIR`)")
    path = Path(base).expanduser()
    if not path.is_dir():
        raise ConfigError(f"--base {base} is not a directory; give a local Hugging Face "
                          "model directory")
    try:
        hf_config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"--base {base} is not a Hugging Face model directory (no "
                          "readable config.json); save one with save_pretrained() or "
                          "`hf download NAME --local-dir DIR`") from None
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ConfigError(f"--base {base} has no weights (*.safetensors); download the full "
                          "model into it")
    model_type = str(hf_config.get("model_type", "?"))
    if hf_config.get("is_encoder_decoder"):
        raise ConfigError(f"--base {base} holds an encoder-decoder model ({model_type}); "
                          "use an encoder (siamese, cross) or a decoder LM (llm)")
    return path.resolve(), model_type, is_decoder_lm(model_type)


def resolve_base(base: str | None, kind: str) -> Path:
    """The absolute ``--base`` directory, checked to hold a model that fits ``kind``."""
    path, model_type, decoder = hf_model_dir(base, f"--backend {kind}")
    if kind == "llm" and not decoder:
        raise ConfigError(f"--base {base} holds a {model_type} model, not a decoder LM; "
                          "--backend llm needs a Llama, Gemma-2, Qwen2 or Mistral-family "
                          "model (use --backend siamese or cross for encoders)")
    if kind != "llm" and decoder:
        raise ConfigError(f"--base {base} holds a decoder LM ({model_type}); use --backend "
                          f"llm for it, or an encoder such as DeBERTa-v3 for --backend {kind}")
    return path


def require_model_extra(config: TransformerConfig) -> None:
    require_extra(f"--backend {config.kind}", peft=config.kind == "llm", load_in=config.load_in)


def load_tokenizer(path: Path, what: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{what} {path} has no usable tokenizer ({exc})") from None


def _train_prior(target: np.ndarray, weight: np.ndarray) -> tuple[float, float, float]:
    """Class balance of the training battles in both orders, add-one smoothed."""
    counts = ((target + swap_proba(target)) * weight[:, None]).sum(axis=0)
    return tuple((counts + 1) / (counts.sum() + len(LABELS)))


def _packing_schema(config: TransformerConfig) -> str:
    """Hash of the input layout: a model only reads inputs packed the way it was trained."""
    return schema_hash([packing.PROMPT_MARKER, packing.RESPONSE_MARKER,
                        packing.RESPONSE_A_MARKER, packing.RESPONSE_B_MARKER,
                        packing.TURN_SEPARATOR, str(config.max_length),
                        str(config.prompt_share)])


# ----------------------------------------------------------------------- the models
class TransformerModel(PreferenceModel):
    """A fine-tuned transformer that predicts p(A wins), p(B wins), p(tie).

    Parameters
    ----------
    config : TransformerConfig, optional
        Hyper-parameters; keyword ``overrides`` replace single fields. ``kind`` is
        always the class's own.

    Attributes
    ----------
    net_ : torch.nn.Module
        The body with its pooling and head (:class:`networks.PreferenceNet`).
    tokenizer_ : transformers tokenizer
    truncation_ : dict
        Packing statistics of the training battles (see :class:`packing.TruncationStats`).
    history_ : list of dict
        One record per evaluation: step, epoch, train_loss, val_log_loss.
    validation_ : dict
        rows, best_step, log_loss_raw (best validation log loss before calibration),
        temperature, steps, resumed_from, stopped_early, and the calibration's report
        (out-of-sample calibrated log loss and ECE of the validation fold, tie model).
    calibration_ : Calibration
        Temperature fitted on the validation fold (1 without one) and the training prior.
    training_ : dict
        Training data summary (rows, class counts, sha256).
    """

    config_class = TransformerConfig
    kind: ClassVar[str]
    pair: ClassVar[bool] = False
    decoder: ClassVar[bool] = False
    pooling: ClassVar[str]

    def __init__(self, config: TransformerConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or self.default_config(), **overrides, kind=self.kind)

    @classmethod
    def default_config(cls) -> TransformerConfig:
        return TransformerConfig(kind=cls.kind)

    def preflight(self) -> None:
        """Settings, the extra and ``--base`` (a Hugging Face directory that fits this
        backend) are checked before any data is read; no weights are loaded."""
        check_config(self.config)
        require_model_extra(self.config)
        resolve_base(self.config.base, self.kind)

    # ----------------------------------------------------------------- training
    def _soft_loss(self, target: np.ndarray) -> bool:
        if self.config.loss != "auto":
            return self.config.loss == "kl"
        return bool(((target > 0) & (target < 1)).any())

    def fit(self, battles: Battles, *, sample_weight: np.ndarray | None = None
            ) -> "TransformerModel":
        """Fine-tune on labelled ``battles`` (hard or soft labels); returns ``self``."""
        config = self.config
        check_config(config)
        check_labelled(battles)
        weight = check_sample_weight(battles, sample_weight)
        require_model_extra(config)
        base = resolve_base(config.base, self.kind)
        config = replace(config, base=str(base))

        from accelerate.utils import set_seed

        from arenajudge.models.transformer import networks, trainer

        accelerator = trainer.make_accelerator(config)
        set_seed(config.seed)
        tokenizer = load_tokenizer(base, "--base")
        packer = Packer(tokenizer, config.max_length, config.prompt_share, pair=self.pair)
        packed, stats = packer.pack(battles)
        logger.info("packing: %s", stats.to_dict())
        body = networks.load_body(base, config, self.decoder, accelerator.local_process_index)
        self._check_positions(body, base)
        if self.decoder:
            body = networks.add_lora(body, config)
        net = self._network(body)
        if config.load_in != "16bit":  # the quantized body already sits on its GPU
            net.head.to(accelerator.device)

        val_mask = holdout_mask(battles, self.config.val_fraction, self.config.seed,
                                without="without a validation fold, keeping the last weights")
        fit_rows = np.flatnonzero(~val_mask) if val_mask is not None else np.arange(len(battles))

        def samples(rows: np.ndarray, both_orders: bool) -> Samples:
            return Samples.build(packer, [packed[i] for i in rows], battles.target[rows],
                                 weight[rows], both_orders)

        val = None if val_mask is None else samples(np.flatnonzero(val_mask), config.symmetric)
        summary = data_summary(battles)
        result = trainer.train_network(
            net, samples(fit_rows, config.swap_augment), val, config, accelerator,
            pad_id=pad_token_id(tokenizer), soft=self._soft_loss(battles.target),
            run_id=trainer.fingerprint(config, summary["sha256"]),
            device_placement=config.load_in == "16bit")

        self.config = config
        self.net_ = result.net
        self.tokenizer_ = tokenizer
        self.truncation_ = stats.to_dict()
        self.history_ = result.state.history
        self.validation_ = {
            "rows": 0 if val is None else val.n_battles, "best_step": result.state.best_step,
            "log_loss_raw": result.state.best_log_loss, "temperature": 1.0,
            "steps": result.total_steps, "resumed_from": result.resumed_from,
            "stopped_early": result.state.stopped_early}
        prior = _train_prior(battles.target[fit_rows], weight[fit_rows])
        self.calibration_ = Calibration(train_prior=prior)
        if val is not None:  # the shipped network never trained on the validation fold
            val_rows = np.flatnonzero(val_mask)
            self.calibration_, report = fit_calibration(
                battles.target[val_rows], self._raw_proba(val),
                prompt_groups(battles.take(val_rows)) % CALIBRATION_FOLDS, prior)
            self.validation_.update(report)
        self.training_ = summary
        return self

    def _check_positions(self, body: Any, base: Path) -> None:
        # Absolute position embeddings (BERT) cap the sequence length; relative ones
        # (DeBERTa-v3) and rotary ones (decoder LMs) do not.
        limit = getattr(body.config, "max_position_embeddings", None)
        absolute = getattr(body.config, "position_biased_input", True) and not self.decoder
        if absolute and limit is not None and self.config.max_length > limit:
            raise ConfigError(f"--max-length {self.config.max_length} exceeds the {limit} "
                              f"positions of --base {base}; use --max-length {limit}")

    def _network(self, body: Any) -> Any:
        from arenajudge.models.transformer import networks

        return networks.PreferenceNet(
            body, networks.hidden_size(body), n_sequences=2 if self.pair else 1,
            pooling=self.pooling, head_hidden=self.config.head_hidden,
            dropout=self.config.head_dropout)

    # --------------------------------------------------------------- prediction
    def _raw_proba(self, samples: Samples) -> np.ndarray:
        """Uncalibrated per-battle probabilities of ``samples``, shape (n_battles, 3)."""
        from arenajudge.models.transformer import trainer

        device = self.net_.head[1].weight.device
        logits = trainer.predict_logits(
            self.net_, samples, pad_id=pad_token_id(self.tokenizer_),
            batch_size=self.config.batch_size * 2,
            dtype=trainer.autocast_dtype(self.config, device))
        return samples.battle_proba(logits)

    def predict_proba(self, battles: Battles, tie_rate: float | None = None) -> np.ndarray:
        """Calibrated probabilities, shape (n, 3), in ``LABELS`` order.

        With ``symmetric`` (the default) the mean of p(A, B) and the swapped p(B, A), so
        swapping A and B swaps the outputs. ``tie_rate`` shifts the prediction to a
        target share of ties (see :meth:`Calibration.transform`).
        """
        self.check_fitted()
        if len(battles) == 0:
            return np.zeros((0, len(LABELS)))
        packer = Packer(self.tokenizer_, self.config.max_length, self.config.prompt_share,
                        pair=self.pair)
        packed, stats = packer.pack(battles)
        if stats.truncated_rows:
            logger.info("packing truncated %d of %d battles", stats.truncated_rows, len(battles))
        samples = Samples.build(packer, packed, None, None, both_orders=self.config.symmetric)
        return self.calibration_.transform(self._raw_proba(samples), tie_rate)

    # ------------------------------------------------------------- persistence
    def save(self, path: str | Path, *, force: bool = False) -> None:
        """Write MODEL_DIR (see the module docstring), atomically; under ``accelerate
        launch`` only the main process writes."""
        self.check_fitted()
        from arenajudge.models.transformer import is_main_process

        if not is_main_process():
            return
        from safetensors.torch import save_file

        with atomic_path(path, force, kind="directory") as staged:
            staged.mkdir()
            body = self.net_.body
            if self.decoder and self.config.merge_lora:
                body = self.net_.body = body.merge_and_unload()
            body.save_pretrained(staged / ("adapter" if self._is_adapter(body) else "body"))
            self.tokenizer_.save_pretrained(staged / "tokenizer")
            save_file({k: v.detach().contiguous().cpu()
                       for k, v in self.net_.head.state_dict().items()}, staged / HEAD_FILE)
            self.calibration_.save(staged / CALIBRATION_FILE)
            write_manifest(staged, backend=self.backend, config=asdict(self.config),
                           feature_schema=_packing_schema(self.config),
                           training={**self.training_, "truncation": self.truncation_,
                                     "history": self.history_},
                           metrics={"validation": self.validation_})

    @staticmethod
    def _is_adapter(body: Any) -> bool:
        return hasattr(body, "peft_config")

    @classmethod
    def load(cls, path: str | Path) -> "TransformerModel":
        """Read a MODEL_DIR written by :meth:`save` (an adapter bundle also needs the
        base model directory it was trained from, at the same path)."""
        path = Path(path)
        manifest = read_manifest(path, backend=cls.backend, verify=True)
        config = config_from_manifest(manifest, TransformerConfig, path)
        if manifest.get("feature_schema") != _packing_schema(config):
            raise ModelLoadError("was trained with another input layout than this arenajudge "
                                 "packs; retrain the model", file=path)
        try:
            require_model_extra(config)
        except MissingDependencyError as exc:
            raise MissingDependencyError(f"loading {path}: {exc}") from None
        from safetensors.torch import load_file

        from arenajudge.models.transformer import networks, trainer

        model = cls(config)
        # training-only switches do not apply to prediction
        runtime = replace(config, gradient_checkpointing=False)
        if (path / "adapter").is_dir():
            base = Path(config.base or "")
            if not (base / "config.json").is_file():
                raise ModelLoadError(f"holds a LoRA adapter over --base {config.base}, which "
                                     "is gone; put the base model back there, or retrain with "
                                     "--merge-lora for a self-contained bundle", file=path)
            body = networks.load_adapter(networks.load_body(base, runtime, cls.decoder),
                                         path / "adapter")
        elif (path / "body").is_dir():
            body = networks.load_body(path / "body", runtime, cls.decoder)
        else:
            raise ModelLoadError("has neither body/ nor adapter/; the model directory is "
                                 "incomplete", file=path)
        model.tokenizer_ = load_tokenizer(path / "tokenizer", "model")
        net = model._network(body)
        try:
            net.head.load_state_dict(load_file(path / HEAD_FILE))
        except (OSError, RuntimeError) as exc:
            raise ModelLoadError(f"has an unusable {HEAD_FILE} ({exc}); retrain the model",
                                 file=path) from None
        device = trainer.inference_device(config)
        if config.load_in == "16bit":
            net.to(device)
        else:
            net.head.to(device)
        model.net_ = net.eval()
        model.calibration_ = Calibration.load(path / CALIBRATION_FILE)
        training = manifest.get("training", {})
        model.truncation_ = training.get("truncation", {})
        model.history_ = training.get("history", [])
        model.training_ = {k: v for k, v in training.items()
                           if k not in ("truncation", "history")}
        model.validation_ = manifest.get("metrics", {}).get("validation", {})
        return model


class SiameseModel(TransformerModel):
    """One shared encoder over "prompt + A" and "prompt + B", mean-pooled, concatenated,
    MLP head (the DeBERTa-v3 notebook's design)."""

    backend = "siamese"
    kind = "siamese"
    pair = True
    pooling = "mean"


class CrossModel(TransformerModel):
    """One encoder sequence "prompt / A / B"; prompt, A and B tokens mean-pooled
    separately, concatenated, MLP head."""

    backend = "cross"
    kind = "cross"
    pooling = "segments"


class LLMModel(TransformerModel):
    """A decoder LM with LoRA adapters, read at its last token, MLP head."""

    backend = "llm"
    kind = "llm"
    decoder = True
    pooling = "last"
