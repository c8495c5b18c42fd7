"""The one table from a manifest's ``backend`` to its model class.

Backends never import this module; it imports them lazily, so asking for the CPU
model never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from arenajudge.config import config_from_mapping, flags_of, resolve_config
from arenajudge.errors import ConfigError, ModelLoadError
from arenajudge.models.contract import CompositeModel, LoadsWithOptions, PreferenceModel
from arenajudge.models.manifest import MANIFEST, read_manifest

_TRAINABLE = {  # fitted from data by `arenajudge train --backend NAME`
    "gbdt": "arenajudge.models.gbdt:GBDTModel",
    "siamese": "arenajudge.models.transformer.model:SiameseModel",
    "cross": "arenajudge.models.transformer.model:CrossModel",
    "llm": "arenajudge.models.transformer.model:LLMModel",
}
_COMPOSITES = {  # built from other MODEL_DIRs, which `load_model` loads for them
    "ensemble": "arenajudge.models.ensemble:EnsembleModel",
    "cascade": "arenajudge.models.cascade:CascadeModel",
}
_CLASSES = {**_TRAINABLE, **_COMPOSITES}
BACKENDS = tuple(_CLASSES)
"""Every backend a manifest may name."""
TRAINABLE = tuple(_TRAINABLE)
"""Backends that ``arenajudge train --backend`` fits from data."""
COMPOSITES = tuple(_COMPOSITES)
"""Backends whose models combine other saved models (their members)."""


def model_class(backend: str) -> type[PreferenceModel]:
    """The class of ``backend``; ConfigError for an unknown name."""
    if backend not in _CLASSES:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    module, name = _CLASSES[backend].split(":")
    return getattr(importlib.import_module(module), name)


def build_model(
    backend: str, values: Mapping[str, Any] | None = None, *, config_path: str | Path | None = None
) -> PreferenceModel:
    """An unfitted ``backend`` model configured by the file at ``config_path`` (YAML or
    TOML) and then ``values`` (e.g. CLI flags given), over the backend's defaults.

    Checks everything that needs no data first (:meth:`PreferenceModel.preflight`):
    out-of-range settings, a missing extra, a bad base model directory.
    """
    cls = model_class(backend)
    config = resolve_config(cls.config_class, config_path, values or {}, base=cls.default_config())
    model = cls(config)
    model.preflight()
    return model


def load_model(path: str | Path, runtime: Mapping[str, Any] | None = None) -> PreferenceModel:
    """Load any saved model, whatever its backend, from its directory.

    ``runtime``: prediction-time settings (e.g. CLI flags given) for backends that take
    them (a ``predict_options_class``, passed to ``load``); ConfigError for others.
    """
    backend = read_manifest(path).get("backend")
    if backend not in _CLASSES:
        raise ModelLoadError(
            f"holds an unknown backend {backend!r}; is this arenajudge too old?",
            file=Path(path) / MANIFEST,
        )
    cls = model_class(backend)
    if issubclass(cls, CompositeModel):
        # the registry hands composites their member loader: backends never import it
        if runtime:
            _refuse_runtime(runtime, path, backend)
        return cls.load(path, load_member=load_model)
    if not runtime:
        return cls.load(path)
    if not isinstance(cls, LoadsWithOptions):
        _refuse_runtime(runtime, path, backend)
    options = config_from_mapping(cls.predict_options_class, runtime, source="command line")
    return cls.load(path, options)


def _refuse_runtime(runtime: Mapping[str, Any], path: str | Path, backend: str) -> NoReturn:
    raise ConfigError(
        f"{flags_of(runtime)} apply to transformer models; {path} holds a {backend} model"
    )


def prefers_gpu(path: str | Path) -> bool:
    """Whether the model saved at ``path`` scores best on a GPU: its class says so
    (:attr:`PreferenceModel.prefers_gpu`), or, for a composite, any of its members does."""
    manifest = read_manifest(path)
    backend = manifest.get("backend")
    if backend not in _CLASSES:
        return False  # load_model names the unknown backend
    members = manifest.get("members") if backend in _COMPOSITES else None
    return model_class(backend).prefers_gpu or any(
        prefers_gpu(Path(path) / str(member.get("path", "")))
        for member in (members if isinstance(members, list) else [])
        if isinstance(member, dict)
    )
