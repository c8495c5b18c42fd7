"""AlpacaEval model-outputs files -> battles of each model against a baseline.

An AlpacaEval ``model_outputs.json`` holds one model's answers: a list of
``{instruction, output, generator}`` objects (``dataset`` and other keys are ignored).
Win rates against a baseline need pairs: each model's output beside the baseline's on
the same instruction. :func:`pair_with_baseline` makes them, as AlpacaEval's
``annotate_head2head`` does, with the baseline as ``output_1`` (side A here) and the
model as ``output_2`` (side B), and refuses outputs whose instructions do not match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from arenajudge.data.cells import CellError, SurrogateCounter, is_missing, pair_cell
from arenajudge.data.frame_reader import Problems
from arenajudge.data.layouts import ALPACA_OUTPUT_COLUMNS
from arenajudge.data.readers import parse_frame
from arenajudge.data.schema import Battles, Turns, join_turns
from arenajudge.data.tables import read_table
from arenajudge.errors import DataError

MAX_SHOWN = 3


def is_model_outputs(frame: pd.DataFrame) -> bool:
    """Whether a raw frame is a model-outputs file (``instruction, output``) rather
    than battles."""
    columns = set(frame.columns)
    return columns.issuperset(ALPACA_OUTPUT_COLUMNS) and "output_1" not in columns


def _text(raw: object, surrogates: SurrogateCounter, path: Path, column: str, row: int) -> str:
    try:
        return join_turns(pair_cell(raw, surrogates)[1])
    except CellError as exc:
        raise DataError(str(exc), file=path, row=row, column=column) from None


def outputs_frame(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """``instruction, output, generator`` of a raw model-outputs frame, as text.

    Raises
    ------
    DataError
        No ``generator`` column, or a cell that is not text.
    """
    path = Path(path)
    if "generator" not in frame.columns:
        raise DataError(
            "has no generator column: each output must name the model that "
            "wrote it (AlpacaEval's model_outputs.json has one)",
            file=path,
        )
    surrogates = SurrogateCounter()
    rows = []
    for row, (instruction, output, generator) in enumerate(
        zip(frame["instruction"], frame["output"], frame["generator"]), start=1
    ):
        name = "" if is_missing(generator) else str(generator).strip()
        if not name:
            raise DataError(
                "is empty; every output must name its model", file=path, row=row, column="generator"
            )
        rows.append(
            (
                _text(instruction, surrogates, path, "instruction", row),
                _text(output, surrogates, path, "output", row),
                name,
            )
        )
    return pd.DataFrame(rows, columns=["instruction", "output", "generator"])


def _describe(instructions: Sequence[str]) -> str:
    shown = ", ".join(repr(text[:60]) for text in list(instructions)[:MAX_SHOWN])
    return f"{len(instructions)} (first: {shown})"


def pair_with_baseline(outputs: pd.DataFrame, baseline: str) -> Battles:
    """Battles ``baseline`` (A) vs each other generator (B) on the same instructions.

    Parameters
    ----------
    outputs : DataFrame
        ``instruction, output, generator`` as :func:`outputs_frame` gives, and
        ``file``, the file each row came from.
    baseline : str
        The generator every other one is compared with.

    Raises
    ------
    DataError
        The baseline has no outputs, a generator answers an instruction twice, there is
        no other generator, or a generator's instructions are not the baseline's.
    """
    by_model = _outputs_by_model(outputs, baseline)
    reference = by_model.pop(baseline)
    if not by_model:
        raise DataError(
            f"holds only the baseline {baseline!r}'s outputs; add the outputs of "
            "the models to compare with it",
            file=reference["file"].iat[0],
        )
    base_output = dict(zip(reference["instruction"], reference["output"]))
    ids: list[str] = []
    names: list[str] = []
    prompts: list[Turns] = []
    response_a: list[Turns] = []
    response_b: list[Turns] = []
    for name, part in by_model.items():
        _check_same_instructions(name, part, reference, baseline)
        for position, (instruction, output) in enumerate(
            zip(part["instruction"], part["output"]), start=1
        ):
            ids.append(f"{name}:{position}")
            prompts.append((instruction,))
            response_a.append((base_output[instruction],))
            response_b.append((output,))
            names.append(name)
    return Battles(
        id=np.array(ids, dtype=object),
        prompt=prompts,
        response_a=response_a,
        response_b=response_b,
        model_a=np.array([baseline] * len(ids), dtype=object),
        model_b=np.array(names, dtype=object),
        path=", ".join(sorted(set(outputs["file"]))),
    )


def _outputs_by_model(outputs: pd.DataFrame, baseline: str) -> dict[str, pd.DataFrame]:
    """Each generator's rows, sorted by name; refuses a baseline without outputs and a
    generator that answers an instruction twice."""
    models = sorted(set(outputs["generator"]))
    if baseline not in models:
        raise DataError(
            f"the baseline {baseline!r} has no outputs in "
            f"{', '.join(sorted(set(outputs['file'])))}; generators found: "
            f"{', '.join(models[:10])}" + (" ..." if len(models) > 10 else "")
        )
    by_model = {}
    for name, part in outputs.groupby("generator", sort=True):
        twice = part["instruction"][part["instruction"].duplicated()].tolist()
        if twice:
            raise DataError(
                f"model {name!r} answers {_describe(twice)} instruction(s) more "
                "than once; keep one output per instruction",
                file=part["file"].iat[0],
            )
        by_model[str(name)] = part
    return by_model


def _check_same_instructions(
    name: str, part: pd.DataFrame, reference: pd.DataFrame, baseline: str
) -> None:
    """Refuses a model whose instructions are not exactly the baseline's: a win rate over
    different instructions would compare different questions."""
    answered = set(part["instruction"])
    base_instructions = set(reference["instruction"])
    missing = [text for text in reference["instruction"] if text not in answered]
    extra = [text for text in part["instruction"] if text not in base_instructions]
    if not missing and not extra:
        return
    problems = []
    if missing:
        problems.append(f"{_describe(missing)} of the baseline's instructions have no output")
    if extra:
        problems.append(f"{_describe(extra)} of its instructions are not the baseline's")
    raise DataError(
        f"model {name!r}'s outputs do not match the baseline "
        f"{baseline!r}'s instructions: " + "; ".join(problems),
        file=part["file"].iat[0],
    )


def read_baseline_battles(
    paths: Sequence[str | Path],
    baseline: str,
    *,
    format: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> Battles:
    """Battles against ``baseline`` from ``paths``: one battles file in any layout
    (votes or not), or AlpacaEval model-outputs files (the baseline's among them),
    paired by instruction with :func:`pair_with_baseline`.

    Raises
    ------
    DataError
        A mix of outputs and battles files, several battles files, or what reading or
        pairing them raises.
    """
    tables = [(Path(path), read_table(path, format)) for path in paths]
    outputs = [is_model_outputs(frame) for _, frame in tables]
    if all(outputs):
        return pair_with_baseline(
            pd.concat(
                [outputs_frame(frame, path).assign(file=str(path)) for path, frame in tables],
                ignore_index=True,
            ),
            baseline,
        )
    if len(tables) > 1:
        odd = tables[outputs.index(False)][0]
        raise DataError(
            "is a battles file; give one battles file, or AlpacaEval "
            "model-outputs files only (the models' and the baseline's)",
            file=odd,
        )
    path, frame = tables[0]
    problems = Problems(str(path))
    battles = parse_frame(frame, path, problems, columns=columns)
    problems.raise_first()
    assert battles is not None  # no errors means the rows parsed
    return battles
