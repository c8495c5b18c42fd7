"""Where a model named by the user lives: ``--base``, predict-time ``--base``, ``embed
--base`` and ``--encoder`` take what Hugging Face tools take.

- a local model directory (``config.json``, weights, tokenizer), as ``save_pretrained``
  or ``hf download NAME --local-dir DIR`` write it;
- a hub id, ``org/name`` or ``org/name@revision``, resolved through huggingface_hub's
  cache: downloaded when online, read from the cache under ``HF_HUB_OFFLINE=1``;
- a ``.gguf`` file (llama.cpp's format), converted once into a model directory under
  arenajudge's cache (:func:`cache_root`), keyed by the file's sha256: every later step
  (4-/8-bit loading, the LM head's label rows, an adapter over the base) then reads a
  plain directory.

A local path wins over a hub id of the same spelling, as in transformers. What was
resolved, and how, is recorded (:meth:`ModelSource.record`) so that a saved model finds
the same weights again, and refuses a ``.gguf`` file whose bytes changed. torch,
transformers and huggingface_hub are imported only when a hub id or a GGUF file needs
them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from arenajudge.errors import ConfigError, MissingDependencyError
from arenajudge.hashing import file_sha256

HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?$")
"""``org/name`` with an optional ``@revision`` (a branch, tag or commit)."""
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
"""What a hub download fetches: config, safetensors weights and tokenizer files (not the
.bin, .gguf, ONNX or other copies many repositories also hold)."""
GGUF_MARKER = "arenajudge-gguf.json"
"""Written last into a converted GGUF directory: a directory without it is unfinished."""


def cache_root() -> Path:
    """arenajudge's cache: ``$ARENAJUDGE_CACHE``, else ``$XDG_CACHE_HOME/arenajudge``,
    else ``~/.cache/arenajudge``."""
    if os.environ.get("ARENAJUDGE_CACHE"):
        return Path(os.environ["ARENAJUDGE_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "arenajudge"


@dataclass(frozen=True)
class ModelSource:
    """A resolved model name.

    Attributes
    ----------
    given : str
        What the user typed.
    kind : {"directory", "hub", "gguf"}
    path : Path
        The model directory to load from (for a GGUF file, its converted copy).
    revision : str or None
        The hub commit the id resolved to.
    gguf_file : Path or None
        The absolute path of the GGUF file.
    sha256 : str or None
        The GGUF file's sha256.
    """

    given: str
    kind: str
    path: Path
    revision: str | None = None
    gguf_file: Path | None = None
    sha256: str | None = None

    @property
    def pinned(self) -> str:
        """The name that finds these weights again: ``org/name@commit`` for a hub id,
        the absolute file or directory otherwise."""
        if self.kind == "hub":
            repo = HUB_ID.match(self.given)
            assert repo is not None
            return f"{repo['repo']}@{self.revision}" if self.revision else repo["repo"]
        return str(self.gguf_file or self.path)

    def record(self) -> dict[str, Any]:
        """What a manifest keeps of the source."""
        record: dict[str, Any] = {"given": self.given, "kind": self.kind, "name": self.pinned}
        if self.revision:
            record["revision"] = self.revision
        if self.sha256:
            record["sha256"] = self.sha256
        return record


def resolve_model(name: str, option: str = "--base", *, sha256: str | None = None) -> ModelSource:
    """The model ``name`` stands for (see the module docstring); ConfigError saying what
    to give instead when it is none of them. ``sha256``: the GGUF file must have these
    bytes (a saved model's base)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSource(name, "directory", path.resolve())
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ConfigError(
                f"{option} {name} is a file, not a model directory, a hub id "
                "(org/name) or a .gguf file"
            )
        return _gguf_source(name, path.resolve(), option, sha256)
    if path.suffix.lower() == ".gguf":
        raise ConfigError(f"{option} {name}: no such file")
    hub = HUB_ID.match(name)
    if hub is None:
        raise ConfigError(
            f"{option} {name}: no such directory, and not a Hugging Face hub "
            "id (org/name[@revision]); give a local model directory, a hub id "
            "or a .gguf file"
        )
    return _hub_source(name, hub["repo"], hub["revision"], option)


# ----------------------------------------------------------------------------- the hub
def _offline() -> bool:
    # read now, not at huggingface_hub's import: a caller may set it after importing
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _hub_cache() -> str | None:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None  # huggingface_hub's default


@lru_cache(maxsize=32)
def _snapshot(
    download: Any, repo: str, revision: str | None, cache: str | None, offline: bool
) -> str:
    """The snapshot folder of ``repo`` at ``revision``: asked once per process (online,
    each ask is a round trip to the hub; the CPU model resolves its --encoder per chunk)."""
    return str(
        download(
            repo,
            revision=revision,
            cache_dir=cache,
            allow_patterns=HUB_FILES,
            local_files_only=offline,
        )
    )


def _hub_source(given: str, repo: str, revision: str | None, option: str) -> ModelSource:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise MissingDependencyError(
            f"{option} {given} names a Hugging Face hub model, which needs huggingface_hub; "
            "install it with `pip install arenajudge[transformers]`, or give a local "
            "model directory"
        ) from None
    offline = _offline()
    try:
        folder = _snapshot(snapshot_download, repo, revision, _hub_cache(), offline)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = (
            "HF_HUB_OFFLINE=1 and it is not in the cache"
            if offline
            else ("it is neither in the cache nor downloadable")
        )
        raise ConfigError(
            f"{option} {given}: {where} ({reason}); download it while online with "
            f"`hf download {repo}{f' --revision {revision}' if revision else ''}`, or "
            "give a local model directory"
        ) from None
    path = Path(str(folder))
    # a snapshot folder is named by its commit
    return ModelSource(given, "hub", path.resolve(), revision=path.name)


# ------------------------------------------------------------------------------ GGUF
@lru_cache(maxsize=32)
def _gguf_sha256(path: Path, size: int, mtime_ns: int) -> str:
    """sha256 of a GGUF file, once per version of it (size and mtime change with it)."""
    return file_sha256(path)


def _gguf_source(given: str, path: Path, option: str, expected: str | None) -> ModelSource:
    stat = path.stat()
    digest = _gguf_sha256(path, stat.st_size, stat.st_mtime_ns)
    if expected and digest != expected:
        raise ConfigError(
            f"{option} {given} is not the GGUF file the model was trained on "
            f"(sha256 {digest[:12]}…, expected {expected[:12]}…)"
        )
    return ModelSource(
        given, "gguf", convert_gguf(path, digest, option), gguf_file=path, sha256=digest
    )


def convert_gguf(path: Path, digest: str, option: str = "--base") -> Path:
    """The model directory converted from the GGUF file ``path`` (sha256 ``digest``):
    made once under ``cache_root()/gguf``, published by a rename so that a run that
    stops halfway leaves nothing a later run would read."""
    target = cache_root() / "gguf" / digest[:32]
    if (target / GGUF_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _convert_into(path, staged, option)
        (staged / GGUF_MARKER).write_text(
            json.dumps({"gguf_file": str(path), "sha256": digest}, indent=1), encoding="utf-8"
        )
        if target.exists():  # unfinished leftovers; a finished one has its marker
            if (target / GGUF_MARKER).is_file():
                return target
            shutil.rmtree(target)
        try:
            staged.rename(target)
        except OSError:  # another run published it first
            if not (target / GGUF_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return target


def _convert_into(path: Path, out: Path, option: str) -> None:
    """Dequantise the GGUF file into ``out`` as safetensors, with its tokenizer (and
    chat template, when the file carries one)."""
    if importlib.util.find_spec("gguf") is None:
        raise MissingDependencyError(
            f"{option} {path} is a GGUF file, which needs the gguf package; install it "
            "with `pip install arenajudge[llm]` (or `pip install gguf`)"
        )
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(path.parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        try:  # a causal LM keeps its LM head (--head tokens reads it)
            model = AutoModelForCausalLM.from_pretrained(
                folder, gguf_file=name, dtype=torch.float32
            )
        except ValueError:
            model = AutoModel.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(
            f"{option} {path}: transformers cannot read this GGUF file "
            f"({(str(exc).strip().splitlines() or [type(exc).__name__])[0]})"
        ) from None
    # the weights are plain floats now; the GGUF quantization record would make
    # save_pretrained refuse, and a later load look for the GGUF file
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    setattr(model, "hf_quantizer", None)  # noqa: B010 (typed as a quantizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
