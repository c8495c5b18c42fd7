"""The transformer preference models: siamese, cross and llm.

They differ in class attributes: how many sequences a battle becomes (``pair``),
whether the body is a decoder LM with LoRA adapters (``decoder``), how hidden
states are pooled (``pooling``) and the manifest ``backend`` name. torch, transformers,
accelerate and peft are imported only inside ``fit`` and ``load``.

The saved MODEL_DIR is :mod:`~arenajudge.models.transformer.bundle`'s.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np

from arenajudge.calibration import (
    CALIBRATION_FOLDS,
    Calibration,
    fit_calibration,
    smoothed_prior,
)
from arenajudge.config import check_config
from arenajudge.data.folds import group_folds, holdout_mask, prompt_groups
from arenajudge.data.schema import LABELS, Battles
from arenajudge.models.contract import PreferenceModel, check_labelled, check_sample_weight
from arenajudge.models.manifest import data_summary
from arenajudge.models.transformer import bundle, packing
from arenajudge.models.transformer.basemodel import (
    check_positions,
    load_tokenizer,
    require_model_extra,
    resolve_base,
)
from arenajudge.models.transformer.config import PredictOptions, TransformerConfig, parse_tta
from arenajudge.models.transformer.packing import PackedBattle, Packer, pad_token_id
from arenajudge.models.transformer.samples import Samples, softmax

logger = logging.getLogger(__name__)


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
    predict_options_ : PredictOptions
        Prediction-time settings given to :meth:`load` (batching, TTA).
    """

    config_class = TransformerConfig
    predict_options_class = PredictOptions
    prefers_gpu = True
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
        """Settings, the extras, a GPU where one is needed and ``--base`` (a Hugging Face
        directory that fits this backend) are checked before any data is read; no
        weights are loaded."""
        check_config(self.config)
        require_model_extra(self.config)
        resolve_base(self.config.base, self.kind)

    # ----------------------------------------------------------------- training
    def _soft_loss(self, target: np.ndarray) -> bool:
        if self.config.loss != "auto":
            return self.config.loss == "kl"
        return bool(((target > 0) & (target < 1)).any())

    def fit(self, battles: Battles, *, sample_weight: np.ndarray | None = None) -> TransformerModel:
        """Fine-tune on labelled ``battles`` (hard or soft labels), or with ``zero_shot``
        only calibrate the base's own verdicts on them; returns ``self``."""
        check_config(self.config)
        check_labelled(battles)
        weight = check_sample_weight(battles, sample_weight)
        require_model_extra(self.config)
        source = resolve_base(self.config.base, self.kind)
        self.tokenizer_ = load_tokenizer(source.path, "--base")
        self.config = replace(
            self.config, base=source.pinned, prompt_format=self._resolved_format()
        )
        packer = self._packer()
        packed, stats = packer.pack(battles)
        logger.info("packing: %s", stats.to_dict())
        self.predict_options_ = PredictOptions()
        self.truncation_ = stats.to_dict()
        self.training_ = {**data_summary(battles), "base": source.record()}
        if self.config.zero_shot:
            self._fit_zero_shot(battles, weight, packer, packed, source.path)
        else:
            self._fine_tune(battles, weight, packer, packed, source.path)
        return self

    def _resolved_format(self) -> str:
        """``prompt_format`` with ``auto`` decided: chat for a decoder LM whose tokenizer
        has a chat template, else plain."""
        wanted = self.config.prompt_format
        if wanted != "auto":
            return wanted
        return "chat" if self.decoder and packing.chat_frame(self.tokenizer_) else "plain"

    def _fine_tune(
        self,
        battles: Battles,
        weight: np.ndarray,
        packer: Packer,
        packed: list[PackedBattle],
        base: Path,
    ) -> None:
        """Train the network on the battles outside the validation fold; calibrate on it."""
        from accelerate.utils import set_seed

        target = check_labelled(battles)  # fit checked; this narrows the type

        from arenajudge.models.transformer import checkpoints, networks, trainer

        config = self.config
        accelerator = trainer.make_accelerator(config.training)
        set_seed(config.seed)
        body = networks.load_body(base, config, self.decoder, accelerator.local_process_index)
        check_positions(body, config.max_length, base)
        net = self._network(body, base, adapters=True, label_rows=True)
        if config.load_in != "16bit":  # the quantized body already sits on its device
            net.head.to(accelerator.device)

        val_mask = holdout_mask(
            battles,
            config.val_fraction,
            config.seed,
            without="without a validation fold, keeping the last weights",
        )
        fit_rows = np.flatnonzero(~val_mask) if val_mask is not None else np.arange(len(battles))

        def samples(rows: np.ndarray, both_orders: bool) -> Samples:
            return Samples.build(
                packer, [packed[i] for i in rows], target[rows], weight[rows], both_orders
            )

        val = None if val_mask is None else samples(np.flatnonzero(val_mask), config.symmetric)
        result = trainer.Trainer(
            net,
            samples(fit_rows, config.swap_augment),
            val,
            config.training,
            accelerator,
            pad_id=pad_token_id(self.tokenizer_),
            soft=self._soft_loss(target),
            run_id=checkpoints.fingerprint(config, self.training_["sha256"]),
            device_placement=config.load_in == "16bit",
        ).fit()

        self.net_ = result.net
        self.history_ = result.state.history
        self.validation_ = {
            "rows": 0 if val is None else val.n_battles,
            "best_step": result.state.best_step,
            "log_loss_raw": result.state.best_log_loss,
            "temperature": 1.0,
            "steps": result.total_steps,
            "resumed_from": result.resumed_from,
            "stopped_early": result.state.stopped_early,
        }
        prior = smoothed_prior(target[fit_rows], weight[fit_rows])
        self.calibration_ = Calibration(train_prior=prior)
        if val is not None and val_mask is not None:
            self._calibrate_on(battles.take(np.flatnonzero(val_mask)), val, prior)

    def _calibrate_on(self, held: Battles, val: Samples, prior: tuple[float, float, float]) -> None:
        """Fit the calibration on the validation fold ``held`` (its samples ``val``),
        which the shipped network never trained on, cross-fitted over its prompts."""
        scored = held.scored_target
        assert scored is not None  # fit checked the labels
        self.calibration_, report = fit_calibration(
            scored,
            self._raw_proba(val),
            group_folds(prompt_groups(held), CALIBRATION_FOLDS),
            prior,
            held.source,
        )
        self.validation_.update(report)

    def _fit_zero_shot(
        self,
        battles: Battles,
        weight: np.ndarray,
        packer: Packer,
        packed: list[PackedBattle],
        base: Path,
    ) -> None:
        """Score every battle with the untouched base and fit only the calibration
        (:mod:`~arenajudge.models.transformer.zero_shot`)."""
        from arenajudge.models.transformer import networks, zero_shot

        config = self.config
        zero_shot.warn_about_layout(config)
        body = networks.load_body(base, config, self.decoder)
        check_positions(body, config.max_length, base)
        self.net_ = self._placed(self._network(body, base, adapters=False, label_rows=True))
        target = check_labelled(battles)
        samples = Samples.build(packer, packed, target, weight, config.symmetric)
        raw = self._raw_proba(samples)
        self.history_ = []
        self.calibration_, self.validation_ = zero_shot.calibrate_verdicts(battles, weight, raw)

    def _packer(self) -> Packer:
        return Packer(
            self.tokenizer_,
            self.config.max_length,
            self.config.prompt_share,
            pair=self.pair,
            chat=self.config.prompt_format == "chat",
        )

    def _network(self, body: Any, source: Path, *, adapters: bool, label_rows: bool) -> Any:
        """The body (with new LoRA adapters when ``adapters``) under its pooling and
        head; a token head starts from the rows of the LM head of ``source`` when
        ``label_rows`` (else it waits for saved weights)."""
        from arenajudge.models.transformer import networks

        network = self.config.network
        if adapters and network.uses_lora:
            body = networks.add_lora(body, network, self.config.gradient_checkpointing)
        if network.head == "tokens":
            head = networks.token_head(
                body, networks.label_rows(source, body, self.tokenizer_) if label_rows else None
            )
        else:
            head = networks.mlp_head(
                networks.pooled_size(body, 2 if self.pair else 1, self.pooling),
                network.head_hidden,
                network.head_dropout,
            )
        return networks.PreferenceNet(body, head, self.pooling)

    def _placed(self, net: Any) -> Any:
        """``net`` on the inference device, in eval mode; a quantized body stays where
        it was loaded."""
        from arenajudge.models.transformer import devices

        device = devices.inference_device(self.config.device)
        if self.config.load_in == "16bit":
            net.to(device)
        else:
            net.head.to(device)
        return net.eval()

    # --------------------------------------------------------------- prediction
    def _logits(self, samples: Samples, rows: np.ndarray | None = None) -> np.ndarray:
        """Logits (len(samples), 3) of the samples at ``rows`` (default all)."""
        from arenajudge.models.transformer import batches, devices, networks

        options = getattr(self, "predict_options_", PredictOptions())
        # net_ is always the PreferenceNet that _network built (nn.Module to the trainer)
        weight = cast("networks.PreferenceNet", self.net_).head_weight
        return batches.predict_logits(
            self.net_,
            samples,
            pad_id=pad_token_id(self.tokenizer_),
            batch_size=options.batch_size or self.config.batch_size * 2,
            max_tokens=options.max_tokens_per_batch,
            rows=rows,
            dtype=devices.autocast_dtype(self.config.precision, weight.device),
        )

    def _raw_proba(self, samples: Samples) -> np.ndarray:
        """Uncalibrated per-battle probabilities of ``samples``, shape (n_battles, 3)."""
        return samples.battle_proba(self._logits(samples))

    def _swap_share(self) -> float:
        options = getattr(self, "predict_options_", PredictOptions())
        return parse_tta(options.tta or ("full" if self.config.symmetric else "none"))

    def predict_proba(self, battles: Battles, tie_rate: float | None = None) -> np.ndarray:
        """Calibrated probabilities, shape (n, 3), in ``LABELS`` order.

        With A/B-swap TTA (``symmetric``, the default; ``--tta``) the mean of p(A, B)
        and the swapped p(B, A): on every battle (full, so swapping A and B swaps the
        outputs), or on the share F the first pass is least sure about
        (``uncertain:F``). ``tie_rate`` shifts the prediction to a target share of
        ties (see :meth:`Calibration.transform`).
        """
        self.check_fitted()
        if len(battles) == 0:
            return np.zeros((0, len(LABELS)))
        # one packer per call: with a chat template, building one renders the template
        packer = self._packer()
        packed, stats = packer.pack(battles)
        if stats.truncated_rows:
            logger.info("packing truncated %d of %d battles", stats.truncated_rows, len(battles))
        share, n = self._swap_share(), len(battles)
        samples = Samples.build(packer, packed, None, None, both_orders=share > 0)
        logits = self._logits(samples, np.arange(n))
        proba = softmax(logits[:n])
        if share > 0:
            # least sure first: the lowest top probability, ties broken by row
            swapped = np.argsort(proba.max(axis=1), kind="stable")[: int(np.ceil(share * n))]
            logits = self._logits(samples, n + swapped) + logits
            proba[swapped] = samples.battle_proba(logits)[swapped]
        return self.calibration_.transform(proba, tie_rate, battles.source)

    # ------------------------------------------------------------- persistence
    def save(self, path: str | Path, *, force: bool = False) -> None:
        """Write MODEL_DIR (see :mod:`~arenajudge.models.transformer.bundle`), atomically;
        under ``accelerate launch`` only the main process writes."""
        self.check_fitted()
        from arenajudge.models.transformer import is_main_process

        if is_main_process():
            bundle.write_bundle(self, path, force)

    @classmethod
    def load(cls, path: str | Path, options: PredictOptions | None = None) -> TransformerModel:
        """Read a MODEL_DIR written by :meth:`save`; ``options`` override how it predicts
        (batching, TTA) and where its parts are (``base``, device, precision of the
        weights). An adapter bundle or a zero-shot judge needs the base model it was
        trained from, where it was trained or at ``options.base``."""
        return bundle.read_bundle(cls, Path(path), options or PredictOptions())


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
    """A decoder LM with LoRA adapters, read at its last token; an MLP head or the LM
    head's scores of the label words (``--head tokens``)."""

    backend = "llm"
    kind = "llm"
    decoder = True
    pooling = "last"
