"""Resume checkpoints of a training run: only what training changes (trainable weights,
optimizer moments, RNG states) as safetensors plus a JSON state, never pickles.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from arenajudge.errors import ConfigError

STATE_FILE = "state.json"


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


def fingerprint(config: Any, data_sha256: str) -> str:
    """What a checkpoint must match to be resumed: the settings and the training data."""
    settings = {k: v for k, v in asdict(config).items() if k not in ("checkpoint_dir", "device")}
    return hashlib.sha256(json.dumps([settings, data_sha256], sort_keys=True).encode()).hexdigest()[
        :16
    ]


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
            raise ConfigError(
                f"--checkpoint-dir {self.path} holds a run with other settings "
                "or data; give another directory, or delete it to start over"
            )
        if saved["world_size"] != self.accelerator.num_processes:
            raise ConfigError(
                f"--checkpoint-dir {self.path} was written by "
                f"{saved['world_size']} processes; resume with as many"
            )
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

    def save(
        self,
        state: TrainState,
        trainable: dict[str, torch.Tensor],
        best: dict[str, torch.Tensor],
        optimizer: torch.optim.Optimizer,
    ) -> None:
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
        (folder / f"optimizer.rank{self.rank}.json").write_text(
            json.dumps({"optimizer": meta, "scaler": scaler.state_dict() if scaler else None})
        )
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            staged = self.path / f"{STATE_FILE}.tmp"
            staged.write_text(
                json.dumps(
                    {
                        "fingerprint": self.fingerprint,
                        "world_size": self.accelerator.num_processes,
                        "state": asdict(state),
                    },
                    indent=1,
                )
            )
            os.replace(staged, self.path / STATE_FILE)
            if previous is not None and previous.step != state.step:
                shutil.rmtree(self._folder(previous), ignore_errors=True)
        self.accelerator.wait_for_everyone()
