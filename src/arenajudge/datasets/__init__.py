"""The bundled sample: 3,000 real human-preference battles to try arenajudge on.

794 PandaLM battles (Apache-2.0) and 2,206 Anthropic HH-RLHF battles (MIT), with each
battle's ``source``; ``ATTRIBUTION.md`` and the two licence files beside the data say
where they come from. ``scripts/make_sample.py`` rebuilds the file from the shared data.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from arenajudge.data.readers import read_battles
from arenajudge.data.schema import Battles

SAMPLE_FILE = "sample.csv.gz"
LICENCE_FILES = ("ATTRIBUTION.md", "LICENSE-HH-RLHF-MIT.txt", "LICENSE-PandaLM-Apache-2.0.txt")


def sample_path() -> Path:
    """Where the sample's ``.csv.gz`` lies inside the installed package."""
    return Path(str(resources.files(__name__).joinpath(SAMPLE_FILE)))


def load_sample() -> Battles:
    """The bundled sample as labelled ``Battles``, with ``source`` set for every row.

    Sources: ``pandalm_testset_v1`` (794 battles, 11% ties, strong length signal) and
    ``hh_rlhf_test`` (2,206 multi-turn dialogues, no ties).
    """
    return read_battles(sample_path())


__all__ = ["LICENCE_FILES", "SAMPLE_FILE", "load_sample", "sample_path"]
