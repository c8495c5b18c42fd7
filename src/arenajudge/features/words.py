"""The whitespace-split words of many texts, split and counted in Arrow.

Splitting 150M characters into Python strings, hashing them and building Python
sets costs seconds per feature batch; Arrow's C++ kernels split and factorise the
words without one Python object per word, and the per-text statistics and set
overlaps then become sparse-matrix arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    import pyarrow as pa


def arrow_strings(texts: list[str]) -> pa.LargeStringArray:
    """``texts`` as one Arrow large-string array; lone surrogates (not UTF-8) become "?"."""
    import pyarrow as pa

    try:
        return pa.array(texts, type=pa.large_string())
    except UnicodeEncodeError:
        return pa.array(
            [t.encode("utf-8", "replace").decode("utf-8") for t in texts], type=pa.large_string()
        )


@dataclass(frozen=True)
class Words:
    """Words of n texts: text ``i`` holds ``distinct[codes[indptr[i]:indptr[i + 1]]]``.

    Attributes
    ----------
    indptr : ndarray of int64, shape (n + 1,)
    codes : ndarray of int32, shape (n_words,)
        Index of each word, in text order, into ``distinct``.
    distinct : list of str
        Each distinct (case-sensitive) word once.
    """

    indptr: np.ndarray
    codes: np.ndarray
    distinct: list[str]

    @classmethod
    def split(cls, texts: list[str]) -> Words:
        """Split each text on Unicode whitespace, like ``str.split()``."""
        import pyarrow.compute as pc

        lists = pc.utf8_split_whitespace(arrow_strings(texts))
        pieces = lists.flatten()
        # Arrow splits at every whitespace character; str.split() drops the empty pieces
        kept = np.asarray(pc.not_equal(pc.binary_length(pieces), 0), dtype=bool)
        kept_before = np.concatenate([[0], np.cumsum(kept)])
        encoded = pc.dictionary_encode(pieces.filter(kept))
        return cls(
            indptr=kept_before[np.asarray(lists.offsets)],
            codes=np.asarray(encoded.indices, dtype=np.int32),
            distinct=encoded.dictionary.to_pylist(),
        )

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def counts(self) -> np.ndarray:
        """Number of words of each text, shape (n,)."""
        return np.diff(self.indptr)

    def per_text_sum(self, values: np.ndarray) -> np.ndarray:
        """Sum over each text's words of ``values[word]``, shape (n,)."""
        totals = np.concatenate([[0], np.cumsum(values[self.codes], dtype=np.float64)])
        return totals[self.indptr[1:]] - totals[self.indptr[:-1]]

    @property
    def word_lengths(self) -> np.ndarray:
        """Characters of each distinct word, shape (len(distinct),)."""
        return np.fromiter(map(len, self.distinct), dtype=np.int64, count=len(self.distinct))

    def matrix(self, columns: np.ndarray, n_columns: int) -> sp.csr_matrix:
        """(n, n_columns) word counts with word ``w`` in column ``columns[w]``.

        Entries stay in text order (duplicates unsummed), so a product with a dense
        matrix adds each text's vectors in the same order whatever the column numbering.
        """
        return sp.csr_matrix(
            (np.ones(len(self.codes), dtype=np.float32), columns[self.codes], self.indptr),
            shape=(len(self), n_columns),
        )

    @cached_property
    def lower_sets(self) -> sp.csr_matrix:
        """(n, n_lower_words) 0/1 matrix: which lower-cased words each text holds."""
        import pyarrow as pa
        import pyarrow.compute as pc

        lowered = pc.dictionary_encode(
            pc.utf8_lower(pa.array(self.distinct, type=pa.large_string()))
        )
        columns = np.asarray(lowered.indices, dtype=np.int32)
        sets = self.matrix(columns, len(lowered.dictionary))
        sets.sum_duplicates()
        sets.data[:] = 1
        return sets

    @property
    def distinct_lower_counts(self) -> np.ndarray:
        """Number of distinct lower-cased words of each text, shape (n,)."""
        return np.diff(self.lower_sets.indptr)


def _overlap(left: sp.csr_matrix, right: sp.csr_matrix) -> np.ndarray:
    return np.asarray(left.multiply(right).sum(axis=1), dtype=np.float64).ravel()


def jaccard(left: sp.csr_matrix, right: sp.csr_matrix) -> np.ndarray:
    """Jaccard similarity of paired rows of two 0/1 word-set matrices, shape (n,);
    0 when both sets are empty."""
    shared = _overlap(left, right)
    union = np.diff(left.indptr) + np.diff(right.indptr) - shared
    return np.divide(shared, union, out=np.zeros_like(shared), where=union > 0).astype(np.float32)


def containment(part: sp.csr_matrix, whole: sp.csr_matrix) -> np.ndarray:
    """Share of each row of ``part``'s words found in the paired row of ``whole``, shape (n,)."""
    shared = _overlap(part, whole)
    size = np.diff(part.indptr).astype(np.float64)
    return np.divide(shared, size, out=np.zeros_like(shared), where=size > 0).astype(np.float32)
