"""The one table from a manifest's ``backend`` to its model class.

Backends never import this module; it imports them lazily, so asking for the CPU
model never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from arenajudge.config import config_from_mapping, resolve_config
from arenajudge.errors import ConfigError, ModelLoadError
from arenajudge.models.contract import PreferenceModel
from arenajudge.models.manifest import MANIFEST, read_manifest

_CLASSES = {
    "gbdt": "arenajudge.models.gbdt:GBDTModel",
    "siamese": "arenajudge.models.transformer.model:SiameseModel",
    "cross": "arenajudge.models.transformer.model:CrossModel",
    "llm": "arenajudge.models.transformer.model:LLMModel",
    "ensemble": "arenajudge.models.ensemble:EnsembleModel",
    "cascade": "arenajudge.models.cascade:CascadeModel",
}
BACKENDS = tuple(_CLASSES)
"""Every backend a manifest may name."""
TRAINABLE = ("gbdt", "siamese", "cross", "llm")
"""Backends that ``arenajudge train --backend`` fits from data."""


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
    if not runtime:
        return cls.load(path)
    options_class = getattr(cls, "predict_options_class", None)
    if options_class is None:
        flags = ", ".join("--" + name.replace("_", "-") for name in runtime)
        raise ConfigError(f"{flags} apply to transformer models; {path} holds a {backend} model")
    return cls.load(path, config_from_mapping(options_class, runtime, source="command line"))
