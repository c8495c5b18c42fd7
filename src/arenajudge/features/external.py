"""Features from outside embeddings (``arenajudge embed``, ``--embeddings EMB.parquet``).

LM hidden states are wide (768 to 3,584 dimensions) and would swamp the trees, so a
PCA fitted on the training battles' prompts and responses keeps ``components``
directions. The blocks mirror the WordLlama ones (see :mod:`arenajudge.features.builder`):
the projected prompt and the A–B cosine are shared, each response's cosine with the
prompt is a side feature, and the projected A − B flips sign with the order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arenajudge.data.schema import ExternalEmbeddings
from arenajudge.errors import DataError, ModelLoadError

logger = logging.getLogger(__name__)

EXTERNAL_SIDE_NAMES = ("ext_prompt_cosine",)


def external_names(components: int) -> tuple[list[str], list[str], list[str]]:
    """Names of the (shared, side, anti) blocks of :meth:`ExternalProjection.transform`."""
    return (
        ["ext_ab_cosine"] + [f"prompt_ext_{i}" for i in range(components)],
        list(EXTERNAL_SIDE_NAMES),
        [f"ext_diff_{i}" for i in range(components)],
    )


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


@dataclass(frozen=True)
class ExternalProjection:
    """A PCA of one encoder's embeddings and the features it gives.

    Attributes
    ----------
    encoder : str
        The encoder directory the training embeddings came from.
    mean : ndarray, shape (dim,)
    components : ndarray, shape (k, dim)
        Principal directions of the L2-normalised training vectors.
    """

    encoder: str
    mean: np.ndarray
    components: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.components.shape[1])

    @classmethod
    def fit(cls, embeddings: ExternalEmbeddings, components: int, seed: int) -> ExternalProjection:
        """PCA with at most ``components`` directions of all prompts and responses."""
        from sklearn.decomposition import PCA

        flat = _unit(embeddings.vectors.reshape(-1, embeddings.dim).astype(np.float64))
        k = max(1, min(components, embeddings.dim, len(flat) - 1))
        pca = PCA(n_components=k, random_state=seed).fit(flat)
        # safetensors writes raw C-order buffers; sklearn's components_ may be F-ordered
        return cls(
            encoder=embeddings.encoder,
            mean=np.ascontiguousarray(pca.mean_, dtype=np.float32),
            components=np.ascontiguousarray(pca.components_, dtype=np.float32),
        )

    def check(self, embeddings: ExternalEmbeddings | None) -> ExternalEmbeddings:
        """``embeddings`` if they come from the training encoder; a clear error otherwise."""
        remedy = (
            f"pass --embeddings EMB.parquet made with `arenajudge embed DATA --base "
            f"{self.encoder} --out EMB.parquet`"
        )
        if embeddings is None:
            raise DataError(f"this model was trained with outside embeddings; {remedy}")
        if embeddings.dim != self.dim:
            raise DataError(
                f"holds {embeddings.dim}-d embeddings from {embeddings.encoder!r}; "
                f"the model was trained on {self.dim}-d ones; {remedy}",
                file=embeddings.path or None,
            )
        if Path(embeddings.encoder).name != Path(self.encoder).name:
            # the same weights may sit at another path on the scoring machine
            logger.warning(
                "%s: embeddings come from %s, the model was trained on %s's",
                embeddings.path,
                embeddings.encoder,
                self.encoder,
            )
        return embeddings

    def transform(
        self, embeddings: ExternalEmbeddings | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(shared, side_a, side_b, anti) feature blocks, float32, named by
        :func:`external_names`; battles without embeddings (None) are refused by
        :meth:`check`, naming ``--embeddings``."""
        unit = _unit(self.check(embeddings).vectors.astype(np.float32))
        prompt, side_a, side_b = unit[:, 0], unit[:, 1], unit[:, 2]
        projected = (unit - self.mean) @ self.components.T
        shared = np.column_stack([(side_a * side_b).sum(axis=1), projected[:, 0]])
        return (
            shared.astype(np.float32),
            (side_a * prompt).sum(axis=1, keepdims=True),
            (side_b * prompt).sum(axis=1, keepdims=True),
            (projected[:, 1] - projected[:, 2]).astype(np.float32),
        )

    def save(self, path: Path) -> None:
        from safetensors.numpy import save_file

        save_file(
            {"mean": self.mean, "components": self.components},
            str(path),
            metadata={"encoder": self.encoder},
        )

    @classmethod
    def load(cls, path: Path) -> ExternalProjection:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="numpy") as tensors:
                return cls(
                    encoder=(tensors.metadata() or {}).get("encoder", ""),
                    mean=tensors.get_tensor("mean"),
                    components=tensors.get_tensor("components"),
                )
        except (OSError, SafetensorError) as exc:
            raise ModelLoadError(f"cannot be read ({exc}); retrain the model", file=path) from None
