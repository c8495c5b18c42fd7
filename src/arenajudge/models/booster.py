"""A trained LightGBM model's predictions through LightGBM's C library.

Importing the ``lightgbm`` package imports scikit-learn and SciPy's statistics for its
scikit-learn API, about 0.7 s of every ``predict`` start-up that prediction never uses.
Scoring needs four functions of ``lib_lightgbm`` (load a model from its text, count its
features, predict a dense matrix, free it), so a loaded model calls them directly; the
numbers are LightGBM's own, bit for bit. Training still goes through ``lightgbm.train``.
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

_FLOAT32, _FLOAT64 = 0, 1  # C_API_DTYPE_*
_ROW_MAJOR = 1
_PREDICT_NORMAL = 0
_LIBRARY_NAMES = {"win32": "lib_lightgbm.dll", "darwin": "lib_lightgbm.dylib"}


class BoosterError(ValueError):
    """LightGBM refused a model text or a prediction; the message is LightGBM's."""


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    """``lib_lightgbm`` as shipped inside the lightgbm wheel, or the one the lightgbm
    package itself loads when it lives elsewhere (a conda build)."""
    spec = importlib.util.find_spec("lightgbm")
    if spec is not None and spec.submodule_search_locations:
        name = _LIBRARY_NAMES.get(sys.platform, "lib_lightgbm.so")
        for root in spec.submodule_search_locations:
            path = Path(root) / "lib" / name
            if path.is_file():
                library = ctypes.cdll.LoadLibrary(str(path))
                library.LGBM_GetLastError.restype = ctypes.c_char_p
                return library
    from lightgbm.basic import _LIB

    return _LIB


def _call(result: int) -> None:
    if result != 0:
        raise BoosterError(_library().LGBM_GetLastError().decode("utf-8", "replace").strip())


class Booster:
    """A LightGBM model loaded from its text (``model.txt``), for prediction only.

    Parameters
    ----------
    text : str
        The model as ``lightgbm.Booster.model_to_string()`` writes it.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        # kept here: at interpreter exit module globals may be gone before __del__ runs
        self._free = _library().LGBM_BoosterFree
        self._handle = ctypes.c_void_p()
        iterations = ctypes.c_int(0)
        _call(
            _library().LGBM_BoosterLoadModelFromString(
                ctypes.c_char_p(text.encode("utf-8")),
                ctypes.byref(iterations),
                ctypes.byref(self._handle),
            )
        )
        classes = ctypes.c_int(0)
        _call(_library().LGBM_BoosterGetNumClasses(self._handle, ctypes.byref(classes)))
        self.num_classes = classes.value

    @classmethod
    def from_file(cls, path: str | Path) -> Booster:
        return cls(Path(path).read_text(encoding="utf-8"))

    def num_feature(self) -> int:
        count = ctypes.c_int(0)
        _call(_library().LGBM_BoosterGetNumFeature(self._handle, ctypes.byref(count)))
        return count.value

    def predict(self, features: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """Probabilities of every class, shape (n, num_classes), as
        ``lightgbm.Booster.predict`` gives them for a dense matrix, on ``num_threads``
        threads (0: OpenMP's choice, one per core)."""
        dtype, kind = (
            (np.float32, _FLOAT32) if features.dtype == np.float32 else (np.float64, _FLOAT64)
        )
        data = np.ascontiguousarray(features, dtype=dtype)
        n_rows = data.shape[0]
        out = np.empty(n_rows * self.num_classes, dtype=np.float64)
        written = ctypes.c_int64(0)
        parameters = f"num_threads={num_threads}" if num_threads else ""
        _call(
            _library().LGBM_BoosterPredictForMat(
                self._handle,
                data.ctypes.data_as(ctypes.c_void_p),
                ctypes.c_int(kind),
                ctypes.c_int32(n_rows),
                ctypes.c_int32(data.shape[1]),
                ctypes.c_int(_ROW_MAJOR),
                ctypes.c_int(_PREDICT_NORMAL),
                ctypes.c_int(0),
                ctypes.c_int(-1),
                ctypes.c_char_p(parameters.encode()),
                ctypes.byref(written),
                out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
            )
        )
        return out.reshape(n_rows, self.num_classes)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.text, encoding="utf-8")

    def __reduce__(self) -> tuple[type[Booster], tuple[str]]:
        # the C handle cannot be pickled; the text rebuilds it (Ray actors, worker processes)
        return Booster, (self.text,)

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.value is not None:
            self._free(handle)
            handle.value = None  # freed: a second __del__ must not free it again
