"""arenajudge: predict which of two chatbot responses a person prefers."""

from importlib.metadata import PackageNotFoundError, version

from arenajudge.data import LABELS, Battles, read_battles

try:
    __version__ = version("arenajudge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["LABELS", "Battles", "__version__", "read_battles"]
