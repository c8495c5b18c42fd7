"""The training loop of the transformer backends, on Hugging Face accelerate.

One loop serves a CPU, one GPU and ``accelerate launch`` (data-parallel, FSDP or
DeepSpeed from an accelerate config file): the Accelerator shards the batches,
autocasts, scales fp16 losses and accumulates gradients. Read :class:`Trainer` top to
bottom: ``__init__`` resumes and prepares -> :meth:`Trainer.fit` runs epochs ->
:meth:`Trainer._step` (learning rate, forward, loss, backward, step) -> every
``eval_every`` steps (or each epoch) :meth:`Trainer._evaluate`: validation log loss,
best weights, checkpoint, early stopping.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from arenajudge.metrics import log_loss
from arenajudge.models.transformer import devices
from arenajudge.models.transformer.batches import NET_INPUTS, by_length, logits_of, make_loader
from arenajudge.models.transformer.checkpoints import Checkpoint, TrainState
from arenajudge.models.transformer.config import TrainingConfig
from arenajudge.models.transformer.samples import Samples

logger = logging.getLogger(__name__)


def make_accelerator(config: TrainingConfig) -> Any:
    """The Accelerator for one fit; under ``accelerate launch`` its config file decides
    the device, the processes and (with ``precision auto``) the mixed precision."""
    from accelerate import Accelerator

    devices.check_device(config.device)
    launched_precision = "ACCELERATE_MIXED_PRECISION" in os.environ
    mixed: str | None = None
    if not (launched_precision and config.precision == "auto"):
        dtype = devices.autocast_dtype(config.precision, devices.inference_device(config.device))
        mixed = {None: "no", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    # cpu=True also where no accelerator is present: only then does accelerate join the
    # processes of `accelerate launch --multi_gpu` / torchrun on a CPU machine (gloo).
    cpu = devices.inference_device(config.device).type == "cpu"
    return Accelerator(
        cpu=cpu, mixed_precision=mixed, gradient_accumulation_steps=config.grad_accum
    )


def batch_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, soft: bool
) -> torch.Tensor:
    """Weighted mean loss: KL(target || p) when ``soft``, else cross-entropy on the
    arg-max label. logits, target: (B, 3); weight: (B,)."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    if soft:
        per_row = (torch.xlogy(target, target) - target * log_p).sum(-1)
    else:
        per_row = -log_p.gather(1, target.argmax(1, keepdim=True)).squeeze(1)
    return (per_row * weight).sum() / weight.sum().clamp(min=1e-12)


def learning_rate(step: int, total: int, config: TrainingConfig) -> float:
    """Linear warmup over ``warmup_ratio`` of the steps, then cosine or linear decay to 0
    from the peak ``config.lr`` (resolved, see :attr:`TransformerConfig.training`)."""
    peak = float(config.lr or 0.0)
    warmup = int(config.warmup_ratio * total)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if config.schedule == "cosine":
        return peak * 0.5 * (1 + math.cos(math.pi * progress))
    return peak * (1 - progress)


@dataclass
class TrainResult:
    net: nn.Module
    state: TrainState
    resumed_from: int | None
    total_steps: int


class Trainer:
    """Fine-tunes a preference network on ``train``, picking the best weights on ``val``.

    Parameters
    ----------
    net : nn.Module
        The network (:class:`networks.PreferenceNet`), its trainable parameters marked.
    train, val : Samples
        Training samples; validation samples (each battle in both orders when the
        model is symmetric) or None to keep the last weights.
    config : TrainingConfig
        With ``lr`` resolved (see :attr:`TransformerConfig.training`).
    accelerator : accelerate.Accelerator
    pad_id : int
    soft : bool
        KL loss on label probabilities instead of cross-entropy.
    run_id : str
        :func:`checkpoints.fingerprint` of the settings and data, guarding a resume
        from ``config.checkpoint_dir``.
    device_placement : bool
        False leaves a quantized body where it was loaded.
    """

    def __init__(
        self,
        net: nn.Module,
        train: Samples,
        val: Samples | None,
        config: TrainingConfig,
        accelerator: Any,
        *,
        pad_id: int,
        soft: bool,
        run_id: str,
        device_placement: bool = True,
    ) -> None:
        self.train, self.val = train, val
        self.config, self.accelerator = config, accelerator
        self.pad_id, self.soft = pad_id, soft
        self.checkpoint = (
            Checkpoint(Path(config.checkpoint_dir), run_id, accelerator)
            if config.checkpoint_dir
            else None
        )
        self.state = (self.checkpoint.load_state() if self.checkpoint else None) or TrainState()
        # a step > 0 comes only from a checkpoint: a fresh TrainState starts at 0
        self.resumed_from = self.state.step or None
        self.trainable = {n for n, p in net.named_parameters() if p.requires_grad}
        self.best: dict[str, torch.Tensor] = (
            self.checkpoint.restore_weights(net, self.state)
            if self.resumed_from and self.checkpoint is not None
            else {}
        )
        optimizer = torch.optim.AdamW(
            [p for p in net.parameters() if p.requires_grad],
            lr=config.lr or 0.0,
            weight_decay=config.weight_decay,
        )
        # One prepare call for the model, the optimizer and a loader: only there does
        # accelerate build a DeepSpeed engine or hand FSDP2's sharded parameters to the
        # optimizer. DeepSpeed refuses custom placements, so give one only when needed.
        loaders = [self._raw_loader(self.state.epoch)]
        if val is not None:
            loaders.append(make_loader(val, by_length(val), config.batch_size * 2, pad_id))
        placement = None if device_placement else [False] + [True] * (1 + len(loaders))
        self.net, self.optimizer, *prepared = accelerator.prepare(
            net, optimizer, *loaders, device_placement=placement
        )
        self.first_loader = prepared[0]
        self.val_loader = prepared[1] if val is not None else None
        if self.resumed_from and self.checkpoint is not None:
            self.checkpoint.restore_optimizer(self.optimizer, self.state)
            logger.info("resuming from step %d of %s", self.state.step, config.checkpoint_dir)
        self.n_batches = len(self.first_loader)
        total = config.epochs * math.ceil(self.n_batches / config.grad_accum)
        self.total = min(total, config.max_steps) if config.max_steps else total
        self.losses: list[float] = []

    def fit(self) -> TrainResult:
        """Train until the last step or early stopping; the network with the best
        validation weights (else the last ones)."""
        self.net.train()
        with tqdm(
            total=self.total,
            initial=self.state.step,
            desc="train",
            file=sys.stderr,
            disable=None if self.accelerator.is_local_main_process else True,
        ) as bar:
            while not self._finished():
                for batch in self._epoch_loader():
                    steps = self.state.step
                    self._step(batch)
                    bar.update(self.state.step - steps)
                    if self._finished():
                        break
        net = self.accelerator.unwrap_model(self.net)
        if self.best:
            net.load_state_dict(self.best, strict=False)
        self.accelerator.free_memory()
        return TrainResult(
            net=net, state=self.state, resumed_from=self.resumed_from, total_steps=self.total
        )

    # -------------------------------------------------------------------- the loop
    def _finished(self) -> bool:
        return self.state.step >= self.total or self.state.stopped_early

    def _raw_loader(self, epoch: int) -> torch.utils.data.DataLoader:
        order = np.random.default_rng([self.config.seed, epoch]).permutation(len(self.train))
        return make_loader(self.train, order, self.config.batch_size, self.pad_id)

    def _epoch_loader(self) -> Any:
        """This epoch's batches; a resumed run skips those already trained on."""
        loader = self.first_loader
        if loader is None:
            loader = self.accelerator.prepare_data_loader(self._raw_loader(self.state.epoch))
        self.first_loader = None
        if self.state.batch_in_epoch:
            loader = self.accelerator.skip_first_batches(loader, self.state.batch_in_epoch)
        return loader

    def _step(self, batch: dict[str, torch.Tensor]) -> None:
        """One forward/backward pass; an optimizer step once gradients are accumulated."""
        accelerator, config, state = self.accelerator, self.config, self.state
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(state.step, self.total, config)
        with accelerator.accumulate(self.net):
            logits = self.net(*(batch[key] for key in NET_INPUTS))
            loss = batch_loss(logits, batch["target"], batch["weight"], self.soft)
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.max_grad_norm:
                accelerator.clip_grad_norm_(self.net.parameters(), config.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad()
        self.losses.append(loss.item())
        state.batch_in_epoch += 1
        end_of_epoch = state.batch_in_epoch == self.n_batches
        if end_of_epoch:
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        if not accelerator.sync_gradients:
            return
        state.step += 1
        if (
            state.step == self.total
            or (config.eval_every and state.step % config.eval_every == 0)
            or (end_of_epoch and not config.eval_every)
        ):
            self._evaluate()

    def _evaluate(self) -> None:
        """Record the training loss and the validation log loss; keep the best weights,
        count evaluations without improvement, checkpoint."""
        state = self.state
        record: dict[str, Any] = {
            "step": state.step,
            "epoch": state.epoch,
            "train_loss": float(np.mean(self.losses)),
        }
        self.losses.clear()
        if self.val is not None:
            logits = logits_of(
                self.net, self.val_loader, len(self.val), gather=self.accelerator.gather_for_metrics
            )
            val_loss = log_loss(
                self.val.target[: self.val.n_battles], self.val.battle_proba(logits)
            )
            record["val_log_loss"] = val_loss
            if state.best_log_loss is None or val_loss < state.best_log_loss:
                state.best_log_loss, state.best_step, state.bad_evals = val_loss, state.step, 0
                self.best = self._trainable_state()
            else:
                state.bad_evals += 1
                state.stopped_early = bool(
                    self.config.patience and state.bad_evals >= self.config.patience
                )
        state.history.append(record)
        logger.info(
            "step %d/%d: %s",
            state.step,
            self.total,
            ", ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float)),
        )
        if self.checkpoint is not None:
            self.checkpoint.save(state, self._trainable_state(), self.best, self.optimizer)

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        """CPU copies of the trainable weights, full even when sharded (FSDP)."""
        return {
            k: v.detach().cpu().clone()
            for k, v in self.accelerator.get_state_dict(self.net).items()
            if k in self.trainable
        }
