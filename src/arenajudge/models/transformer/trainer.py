"""The training loop of the transformer backends, on Hugging Face accelerate.

One loop serves a CPU, one GPU and ``accelerate launch`` (data-parallel, FSDP or
DeepSpeed from an accelerate config file): the Accelerator shards the batches,
autocasts, scales fp16 losses and accumulates gradients. Read top to bottom:
:func:`train_network` -> per batch: learning rate, forward, loss, backward, step ->
every ``eval_every`` steps (or each epoch): validation log loss, best weights,
checkpoint, early stopping.

Resume checkpoints hold only what training changes (trainable weights, optimizer
moments, RNG states) as safetensors plus a JSON state, never pickles.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from arenajudge.errors import ConfigError
from arenajudge.metrics import log_loss
from arenajudge.models.transformer.config import TransformerConfig
from arenajudge.models.transformer.packing import Samples, Sequence

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
NET_INPUTS = ("input_ids", "attention_mask", "segment_ids")


# ---------------------------------------------------------------- devices and precision
def _check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible; use --device cpu or auto")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: Apple MPS is not available; use --device cpu or auto")


def inference_device(config: TransformerConfig) -> torch.device:
    """Where a loaded model predicts: ``config.device``, or the best one present."""
    _check_device(config.device)
    if config.device != "auto":
        return torch.device(config.device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("mps" if torch.backends.mps.is_available() else "cpu")


def autocast_dtype(config: TransformerConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``config.precision`` on ``device``; None runs fp32."""
    if config.precision == "fp32":
        return None
    if config.precision == "auto":
        if device.type != "cuda":
            return None  # CPU bf16 autocast is slower than fp32 on most CPUs
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if config.precision == "fp16" and device.type != "cuda":
        raise ConfigError("--precision fp16 needs a CUDA GPU; use bf16 or fp32")
    return torch.bfloat16 if config.precision == "bf16" else torch.float16


def make_accelerator(config: TransformerConfig) -> Any:
    """The Accelerator for one fit; under ``accelerate launch`` its config file decides
    the device, the processes and (with ``precision auto``) the mixed precision."""
    from accelerate import Accelerator

    _check_device(config.device)
    launched_precision = "ACCELERATE_MIXED_PRECISION" in os.environ
    mixed: str | None = None
    if not (launched_precision and config.precision == "auto"):
        device = torch.device("cpu") if config.device == "cpu" else inference_device(config)
        dtype = autocast_dtype(config, device)
        mixed = {None: "no", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    # cpu=True also where no accelerator is present: only then does accelerate join the
    # processes of `accelerate launch --multi_gpu` / torchrun on a CPU machine (gloo).
    cpu = config.device == "cpu" or (config.device == "auto"
                                     and inference_device(config).type == "cpu")
    return Accelerator(cpu=cpu, mixed_precision=mixed,
                       gradient_accumulation_steps=config.grad_accum)


# ------------------------------------------------------------------------ batches
def collate(items: list[tuple[int, list[Sequence], np.ndarray, float]], pad_id: int
            ) -> dict[str, torch.Tensor]:
    """Samples -> right-padded tensors: input_ids, attention_mask, segment_ids (B, S, L),
    target (B, 3), weight (B,), index (B,)."""
    n_seq = len(items[0][1])
    length = max(len(ids) for _, seqs, _, _ in items for ids, _ in seqs)
    input_ids = torch.full((len(items), n_seq, length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(items), n_seq, length), dtype=torch.long)
    segment_ids = torch.zeros((len(items), n_seq, length), dtype=torch.long)
    for row, (_, seqs, _, _) in enumerate(items):
        for col, (ids, segments) in enumerate(seqs):
            input_ids[row, col, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            segment_ids[row, col, :len(ids)] = torch.tensor(segments, dtype=torch.long)
            attention_mask[row, col, :len(ids)] = 1
    return {
        "index": torch.tensor([item[0] for item in items], dtype=torch.long),
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "segment_ids": segment_ids,
        "target": torch.tensor(np.stack([item[2] for item in items]), dtype=torch.float32),
        "weight": torch.tensor([item[3] for item in items], dtype=torch.float32),
    }


def _loader(samples: Samples, order: np.ndarray, batch_size: int, pad_id: int
            ) -> torch.utils.data.DataLoader:
    items = [(int(i), samples.sequences[i], samples.target[i], float(samples.weight[i]))
             for i in order]
    return torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=False,
                                       collate_fn=partial(collate, pad_id=pad_id))


def _by_length(samples: Samples) -> np.ndarray:
    """Sample order from longest to shortest: batches of similar lengths pad little."""
    return np.argsort([-max(len(ids) for ids, _ in seqs) for seqs in samples.sequences],
                      kind="stable")


def logits_of(net: nn.Module, loader: Any, n: int, autocast: ContextManager | None = None,
              gather: Callable | None = None, progress: bool = False) -> np.ndarray:
    """Logits (n, 3) of every sample in ``loader``, placed by the batches' ``index``."""
    out = np.zeros((n, 3), dtype=np.float32)
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    with torch.no_grad():
        for batch in tqdm(loader, desc="predict", disable=not progress or None,
                          file=sys.stderr, leave=False):
            with autocast or nullcontext():
                logits = net(*(batch[key].to(device) for key in NET_INPUTS))
            index = batch["index"].to(logits.device)
            if gather is not None:
                index, logits = gather((index, logits))
            out[index.cpu().numpy()] = logits.float().cpu().numpy()
    net.train(was_training)
    return out


def predict_logits(net: nn.Module, samples: Samples, *, pad_id: int, batch_size: int,
                   dtype: torch.dtype | None) -> np.ndarray:
    """Logits (len(samples), 3) on the device the network lives on, in one process."""
    device = next(net.parameters()).device
    loader = _loader(samples, _by_length(samples), batch_size, pad_id)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else None
    return logits_of(net, loader, len(samples), autocast, progress=True)


# ------------------------------------------------------------------- loss and schedule
def batch_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, soft: bool
               ) -> torch.Tensor:
    """Weighted mean loss: KL(target || p) when ``soft``, else cross-entropy on the
    arg-max label. logits, target: (B, 3); weight: (B,)."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    if soft:
        per_row = (torch.xlogy(target, target) - target * log_p).sum(-1)
    else:
        per_row = -log_p.gather(1, target.argmax(1, keepdim=True)).squeeze(1)
    return (per_row * weight).sum() / weight.sum().clamp(min=1e-12)


def learning_rate(step: int, total: int, config: TransformerConfig) -> float:
    """Linear warmup over ``warmup_ratio`` of the steps, then cosine or linear decay to 0."""
    peak = config.learning_rate
    warmup = int(config.warmup_ratio * total)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if config.schedule == "cosine":
        return peak * 0.5 * (1 + math.cos(math.pi * progress))
    return peak * (1 - progress)


# --------------------------------------------------------------------- checkpoints
@dataclass
class TrainState:
    """Where training stands; saved as JSON in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_log_loss: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def fingerprint(config: TransformerConfig, data_sha256: str) -> str:
    """What a checkpoint must match to be resumed: the settings and the training data."""
    settings = {k: v for k, v in asdict(config).items() if k not in ("checkpoint_dir", "device")}
    return hashlib.sha256(json.dumps([settings, data_sha256], sort_keys=True).encode()
                          ).hexdigest()[:16]


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state_dict as safetensors-ready tensors plus JSON for the rest."""
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for param_id, entry in state["state"].items():
        meta["state"][str(param_id)] = {}
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{param_id}.{key}"] = value.detach().contiguous().cpu()
            else:
                meta["state"][str(param_id)][key] = value
    return tensors, meta


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in meta["state"].items()}
    for key, tensor in tensors.items():
        param_id, name = key.split(".", 1)
        state[int(param_id)][name] = tensor
    return {"state": state, "param_groups": meta["param_groups"]}


class Checkpoint:
    """Resume state in ``path``: ``state.json`` names the latest complete ``step-N/``
    folder of trainable.safetensors, best.safetensors and one optimizer file per process.
    ``state.json`` is replaced last, so an interrupted save leaves the previous one valid.
    """

    def __init__(self, path: Path, fingerprint: str, accelerator: Any) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.accelerator = accelerator
        self.rank = accelerator.process_index

    def load_state(self) -> TrainState | None:
        """The saved state, or None when there is no checkpoint to resume."""
        state_file = self.path / STATE_FILE
        if not state_file.is_file():
            return None
        saved = json.loads(state_file.read_text(encoding="utf-8"))
        if saved["fingerprint"] != self.fingerprint:
            raise ConfigError(f"--checkpoint-dir {self.path} holds a run with other settings "
                              "or data; give another directory, or delete it to start over")
        if saved["world_size"] != self.accelerator.num_processes:
            raise ConfigError(f"--checkpoint-dir {self.path} was written by "
                              f"{saved['world_size']} processes; resume with as many")
        return TrainState(**saved["state"])

    def _folder(self, state: TrainState) -> Path:
        return self.path / f"step-{state.step:08d}"

    def restore_weights(self, net: nn.Module, state: TrainState) -> dict[str, torch.Tensor]:
        """Load the trainable weights into ``net`` (before ``prepare``); returns the best."""
        folder = self._folder(state)
        net.load_state_dict(load_file(folder / "trainable.safetensors"), strict=False)
        best = folder / "best.safetensors"
        return load_file(best) if best.is_file() else {}

    def restore_optimizer(self, optimizer: torch.optim.Optimizer, state: TrainState) -> None:
        """Load this process's optimizer moments, RNG states and loss scale."""
        folder = self._folder(state)
        tensors = load_file(folder / f"optimizer.rank{self.rank}.safetensors")
        meta = json.loads((folder / f"optimizer.rank{self.rank}.json").read_text())
        torch.set_rng_state(tensors.pop("rng.cpu"))
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors.pop("rng.cuda"))
        tensors.pop("rng.cuda", None)
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
        if meta.get("scaler") and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(meta["scaler"])

    def save(self, state: TrainState, trainable: dict[str, torch.Tensor],
             best: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
        folder = self._folder(state)
        previous = self.load_state() if self.accelerator.is_main_process else None
        if self.accelerator.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
            save_file(trainable, folder / "trainable.safetensors")
            if best:
                save_file(best, folder / "best.safetensors")
        self.accelerator.wait_for_everyone()
        tensors, meta = _flatten_optimizer(optimizer.state_dict())
        tensors["rng.cpu"] = torch.get_rng_state()
        if torch.cuda.is_available():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        scaler = self.accelerator.scaler
        save_file(tensors, folder / f"optimizer.rank{self.rank}.safetensors")
        (folder / f"optimizer.rank{self.rank}.json").write_text(json.dumps(
            {"optimizer": meta, "scaler": scaler.state_dict() if scaler else None}))
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            staged = self.path / f"{STATE_FILE}.tmp"
            staged.write_text(json.dumps({"fingerprint": self.fingerprint,
                                          "world_size": self.accelerator.num_processes,
                                          "state": asdict(state)}, indent=1))
            os.replace(staged, self.path / STATE_FILE)
            if previous is not None and previous.step != state.step:
                shutil.rmtree(self._folder(previous), ignore_errors=True)
        self.accelerator.wait_for_everyone()


# ------------------------------------------------------------------------ training
@dataclass
class TrainResult:
    net: nn.Module
    state: TrainState
    resumed_from: int | None
    total_steps: int


def _trainable_state(net: nn.Module, accelerator: Any, names: set[str]
                     ) -> dict[str, torch.Tensor]:
    """CPU copies of the trainable weights, full even when sharded (FSDP)."""
    return {k: v.detach().cpu().clone() for k, v in accelerator.get_state_dict(net).items()
            if k in names}


def train_network(net: nn.Module, train: Samples, val: Samples | None,
                  config: TransformerConfig, accelerator: Any, *, pad_id: int, soft: bool,
                  run_id: str, device_placement: bool = True) -> TrainResult:
    """Fine-tune ``net`` on ``train``; returns it with the best-validation weights.

    ``run_id`` (see :func:`fingerprint`) guards resuming from ``config.checkpoint_dir``.
    ``device_placement=False`` leaves a quantized body where it was loaded.
    """
    checkpoint = (Checkpoint(Path(config.checkpoint_dir), run_id, accelerator)
                  if config.checkpoint_dir else None)
    state = (checkpoint.load_state() if checkpoint else None) or TrainState()
    resumed_from = state.step if state.step else None
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    best = checkpoint.restore_weights(net, state) if resumed_from else {}

    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad],
                                  lr=config.learning_rate, weight_decay=config.weight_decay)
    net = accelerator.prepare_model(net, device_placement=device_placement)
    optimizer = accelerator.prepare_optimizer(optimizer)
    if resumed_from:
        checkpoint.restore_optimizer(optimizer, state)
        logger.info("resuming from step %d of %s", state.step, config.checkpoint_dir)

    def epoch_loader(epoch: int) -> Any:
        order = np.random.default_rng([config.seed, epoch]).permutation(len(train))
        return accelerator.prepare_data_loader(
            _loader(train, order, config.batch_size, pad_id))

    n_batches = len(epoch_loader(0))
    total = config.epochs * math.ceil(n_batches / config.grad_accum)
    if config.max_steps:
        total = min(total, config.max_steps)
    val_loader = None if val is None else accelerator.prepare_data_loader(
        _loader(val, _by_length(val), config.batch_size * 2, pad_id))

    def evaluate_and_save(train_loss: float) -> None:
        record: dict[str, Any] = {"step": state.step, "epoch": state.epoch,
                                  "train_loss": train_loss}
        if val_loader is not None:
            logits = logits_of(net, val_loader, len(val), gather=accelerator.gather_for_metrics)
            val_loss = log_loss(val.target[:val.n_battles], val.battle_proba(logits))
            record["val_log_loss"] = val_loss
            if state.best_log_loss is None or val_loss < state.best_log_loss:
                state.best_log_loss, state.best_step, state.bad_evals = val_loss, state.step, 0
                best.clear()
                best.update(_trainable_state(net, accelerator, trainable))
            else:
                state.bad_evals += 1
                state.stopped_early = bool(config.patience and state.bad_evals >= config.patience)
        state.history.append(record)
        logger.info("step %d/%d: %s", state.step, total,
                    ", ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float)))
        if checkpoint is not None:
            checkpoint.save(state, _trainable_state(net, accelerator, trainable), best,
                            optimizer)

    net.train()
    progress = tqdm(total=total, initial=state.step, desc="train", file=sys.stderr,
                    disable=None if accelerator.is_local_main_process else True)
    losses: list[float] = []
    while state.step < total and not state.stopped_early:
        loader = epoch_loader(state.epoch)
        if state.batch_in_epoch:
            loader = accelerator.skip_first_batches(loader, state.batch_in_epoch)
        for batch in loader:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(state.step, total, config)
            with accelerator.accumulate(net):
                logits = net(*(batch[key] for key in NET_INPUTS))
                loss = batch_loss(logits, batch["target"], batch["weight"], soft)
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(net.parameters(), config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            losses.append(loss.item())
            state.batch_in_epoch += 1
            end_of_epoch = state.batch_in_epoch == n_batches
            if end_of_epoch:
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            progress.update()
            if (state.step == total or (config.eval_every and state.step % config.eval_every
                                        == 0) or (end_of_epoch and not config.eval_every)):
                evaluate_and_save(float(np.mean(losses)))
                losses.clear()
            if state.step >= total or state.stopped_early:
                break
    progress.close()

    net = accelerator.unwrap_model(net)
    if best:
        net.load_state_dict(best, strict=False)
    accelerator.free_memory()
    return TrainResult(net=net, state=state, resumed_from=resumed_from, total_steps=total)
