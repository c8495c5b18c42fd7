"""The docs' shell examples run, so a page that drifts from the code fails here.

An *example* is a command line `arenajudge ...` (or `$ arenajudge ...`, or the part of a
line after `&&`) in a ```bash, ```console or ```sh block of README.md or docs/*.md;
backslash continuations are joined and `# comments` dropped. Two checks:

* every example names a command that exists and only options that command declares
  (all examples, extras included: the CLI declares every option without its extra);
* every example that needs no missing extra and no data beyond the bundled sample
  runs, in a fresh temporary folder, with exit code 0. In a ```console block the lines
  after `$ arenajudge ...` are its shown output: each must appear in what the command
  prints, with every number replaced by "a number" (numbers of the sample differ from
  those of the file the page names; the words, options and layout must not).

What a page's file names stand for is defined openly below: `FILES` maps each name to a
file made from the bundled sample (`arenajudge.datasets`), `NAMES` the model names a page
uses to models of the sample, and `NOT_RUN` lists the examples that are only checked
statically, each with its reason. A name in no table fails the test: map it or say why
it cannot run. To stay fast on 2 cores, `train` and `cv` run with `FAST_CONFIG` added
(`--config`, 20 boosting rounds) unless the example gives `--config` itself, on a
300-row part of the sample; what they claim (the command, its options, its outputs)
is still what runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import pandas as pd
import pytest

from arenajudge.cli import main
from arenajudge.datasets import sample_path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"bash", "console", "sh"}
TIMEOUT_S = 120
FAST_CONFIG = "n_estimators: 20\nearly_stopping_rounds: 5\n"
SMALL_ROWS_PER_SOURCE = 150


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    args: tuple[str, ...]  # after `arenajudge`, redirections dropped
    shown: tuple[str, ...]  # the output a ```console block shows, if any

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: arenajudge {' '.join(self.args)}"


def _split(text: str) -> tuple[str, ...]:
    tokens = shlex.split(text, comments=True)
    kept: list[str] = []
    skip = False
    for token in tokens:  # `> to_label.csv`: the test reads stdout itself
        if skip:
            skip = False
        elif token in (">", "2>", ">>"):
            skip = True
        else:
            kept.append(token)
    return tuple(kept[1:])


def extract_examples(pages: list[Path] = PAGES) -> list[Example]:
    """Every `arenajudge` command line of the shell blocks of ``pages``."""
    examples = []
    for page in pages:
        lines = page.read_text(encoding="utf-8").splitlines()
        language, i = None, 0
        while i < len(lines):
            fence = re.match(r"\s*```(\w*)", lines[i])
            if fence:
                language = None if language is not None else fence.group(1) or "text"
                i += 1
                continue
            start, text = i, lines[i]
            while language in SHELL_LANGUAGES and text.rstrip().endswith("\\"):
                i += 1
                text = text.rstrip()[:-1] + " " + lines[i].strip()
            i += 1
            if language not in SHELL_LANGUAGES:
                continue
            shown = []
            if language == "console" and text.startswith("$ "):
                while i < len(lines) and not lines[i].startswith(("$ ", "```")):
                    shown.append(lines[i])
                    i += 1
            for part in text.split("&&"):
                part = part.strip().removeprefix("$ ")
                if part.startswith("arenajudge "):
                    examples.append(
                        Example(
                            str(page.relative_to(ROOT)),
                            start + 1,
                            _split(part),
                            tuple(s for s in shown if s),
                        )
                    )
    return examples


EXAMPLES = extract_examples()


def _command(args: tuple[str, ...]) -> tuple[click.Command, str, list[str]]:
    """The subcommand an example runs, its name and its arguments."""
    rest = list(args)
    while rest and rest[0].startswith("-"):
        rest.pop(0)  # -v, --debug
    if not rest or rest[0] not in main.commands:
        raise AssertionError(f"no command {rest[:1]} in `arenajudge --help`")
    return main.commands[rest[0]], rest[0], rest[1:]


def test_the_docs_have_examples_to_check():
    assert len(EXAMPLES) > 40
    assert any(example.shown for example in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_documented_command_and_options_exist(example):
    group_options = {o for p in main.params for o in p.opts + p.secondary_opts}
    command, name, rest = _command(example.args)
    declared = {o for p in command.params for o in p.opts + p.secondary_opts} | {"-h"}
    for token in example.args[: example.args.index(name)]:
        assert token in group_options, f"{example}: no global option {token}"
    for token in rest:
        if token.startswith("-") and not re.fullmatch(r"-\d.*", token):
            option = token.split("=", 1)[0]
            assert option in declared, f"{example}: `arenajudge {name}` has no {option}"


# --- the files a page names, made from the bundled sample ---------------------------


def _small(sample: pd.DataFrame) -> pd.DataFrame:
    """300 rows, half PandaLM (named models, ties) and half HH-RLHF: quick to train."""
    parts = [
        rows.sample(SMALL_ROWS_PER_SOURCE, random_state=0) for _, rows in sample.groupby("source")
    ]
    return pd.concat(parts, ignore_index=True)


def _unlabelled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["winner_model_a", "winner_model_b", "winner_tie"])


def _with_language(sample: pd.DataFrame) -> pd.DataFrame:
    """A `language` column for `--by language`: 600 PandaLM rows `en`, the rest `de`."""
    language = ["en"] * len(sample)
    pandalm = sample.index[sample.source != "hh_rlhf_test"]
    for row in pandalm[600:]:
        language[row] = "de"
    return sample.assign(language=language)


def _annotations(sample: pd.DataFrame) -> list[dict]:
    """AlpacaEval's annotations.json layout, from the sample's single-turn named battles."""
    rows = []
    for row in sample[sample.source != "hh_rlhf_test"].itertuples():
        prompt, a, b = (json.loads(t) for t in (row.prompt, row.response_a, row.response_b))
        preference = 1.0 if row.winner_model_a else 2.0 if row.winner_model_b else 1.5
        rows.append(
            {
                "instruction": prompt[0],
                "output_1": a[0],
                "output_2": b[0],
                "generator_1": row.model_a,
                "generator_2": row.model_b,
                "preference": preference,
            }
        )
    return rows


def _json_records(frame: pd.DataFrame) -> list[dict]:
    records = frame.to_dict("records")
    for record in records:
        for column in ("prompt", "response_a", "response_b"):
            record[column] = json.loads(record[column])
    return records


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, list):
        path.write_text(json.dumps(data), encoding="utf-8")
    elif path.suffix == ".parquet":
        frame = data.copy()
        for column in ("prompt", "response_a", "response_b"):
            frame[column] = frame[column].map(json.loads)
        frame.to_parquet(path)
    elif path.suffix in (".jsonl", ".txt"):
        _write_jsonl(path, _json_records(data))
    else:
        data.to_csv(path, index=False)


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


SMALL = "small labelled part of the sample"
# doc's name -> (name in the temporary folder, what the file holds)
FILES: dict[str, tuple[str, str]] = {
    "train.csv": ("train.csv", SMALL),
    "data.csv": ("data.csv", SMALL),
    "labelled.csv": ("labelled.csv", SMALL),
    "train_plus_pl.csv": ("train_plus_pl.csv", SMALL),
    "human_dev.csv": ("human_dev.csv", SMALL),
    "../shared/data/human_dev.csv": ("human_dev.csv", SMALL),
    "past_annotations.json": ("past_annotations.json", "small part as a JSON list"),
    "train.parquet": ("train.parquet", "small part as parquet with native lists"),
    "labelled.jsonl": ("labelled.jsonl", "small part as JSON lines"),
    "data.txt": ("data.txt", "small part as JSON lines"),
    "raw.csv": ("raw.csv", "small part, columns question, answer1, answer2"),
    "sources.csv": ("sources.csv", "id,source of the sample"),
    "human_dev_sources.csv": ("human_dev_sources.csv", "id,source of the sample"),
    "test.csv": ("test.csv", "small part without labels"),
    "unlabelled.csv": ("unlabelled.csv", "small part without labels"),
    "new_answers.csv": ("new_answers.csv", "small part without labels"),
    "new_battles.csv": ("new_battles.csv", "small part without labels"),
    "big.csv.gz": ("big.csv.gz", "the whole bundled sample.csv.gz"),
    "votes.csv": ("votes.csv", "the whole sample with a language column"),
    "annotations.json": ("annotations.json", "AlpacaEval annotations of the sample"),
    "oof.csv": ("oof.csv", "cv --oof of the small part"),
    "oof_gbdt.csv": ("oof_gbdt.csv", "cv --oof of the small part"),
    "blend_oof.csv": ("blend_oof.csv", "cv --oof of the small part"),
    "model/": ("model", "a model trained on the small part"),
    "/tmp/hd_model": ("hd_model", "a model trained on the small part"),
    # pseudo-label --min-confidence 0.6 needs a model sure of some battles: 20 rounds on
    # the small part can stop at one flat round (with the lowest declared versions)
    "models/gbdt": ("models/gbdt", "a model trained on the whole sample"),
    "judge/": ("judge", "a model trained on the small part"),
}
NAMES = {"gpt4_1106_preview": "llama-7b"}  # a baseline of the sample that meets all others
# options whose value a command writes (never made beforehand)
OUTPUT_OPTIONS = {"--out", "--write-oof", "--plot", "--save-difficulty", "--checkpoint-dir"}
PATH_LIKE = re.compile(r"(/|\.(csv|gz|json|jsonl|parquet|txt|png|gguf|yaml))$")


def _not_run_reason(example: Example) -> str | None:
    """Why an example is only checked statically, or None when it runs here."""
    args, text = example.args, " ".join(example.args)
    name = _command(args)[1]
    rules: list[tuple[Callable[[], bool], str]] = [
        (
            lambda: name == "demo",
            (
                "the demo trains on 2,400 rows for minutes; "
                "tests/test_demo.py runs it on a small stand-in sample"
            ),
        ),
        (lambda: name == "serve", "runs until interrupted; tests/test_serve.py starts it"),
        (
            lambda: name == "embed" or "--base" in args or "--backend" in args,
            "needs a Hugging Face model's weights, which the repository does not hold",
        ),
        (
            lambda: any(a in args for a in ("deberta/", "gemma/")),
            "needs the transformer model the page trains above",
        ),
        (lambda: "--embeddings" in args, "needs vectors from `arenajudge embed` of a real encoder"),
        (lambda: "arena_bench_gpt4_pairs.csv.gz" in text, "needs the real arena_bench file"),
        (lambda: name in ("ensemble", "cascade"), "its members need `--embeddings`"),
        (
            lambda: "--address" in args,
            "needs a running Ray cluster; tests/test_engines.py scores on a local Ray",
        ),
        (
            lambda: any(a in text for a in ("model_outputs.json", "difficulty.csv")),
            (
                "needs AlpacaEval model_outputs.json files of one instruction set; "
                "tests/test_winrate.py builds them"
            ),
        ),
    ]
    return next((reason for applies, reason in rules if applies()), None)


def _missing_extra(example: Example) -> str | None:
    """The optional package an example needs and this environment lacks."""
    args = example.args
    needs = []
    if "--engine" in args and "ray" in args:
        needs.append("ray")
    if _command(args)[1] == "report" or "--plot" in args:
        needs.append("matplotlib")
    return next(
        (f"needs {n} (an optional extra)" for n in needs if importlib.util.find_spec(n) is None),
        None,
    )


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory) -> Path:
    """Every file of `FILES`, made once: data from the sample, then a model and OOF."""
    root = tmp_path_factory.mktemp("docs-fixtures")
    sample = pd.read_csv(sample_path())
    small = _small(sample)
    made = {
        SMALL: small,
        "small part as a JSON list": _json_records(small),
        "small part as parquet with native lists": small,
        "small part as JSON lines": small,
        "small part, columns question, answer1, answer2": small.rename(
            columns={"prompt": "question", "response_a": "answer1", "response_b": "answer2"}
        ),
        "id,source of the sample": sample[["id", "source"]],
        "small part without labels": _unlabelled(small),
        "the whole sample with a language column": _with_language(sample),
        "AlpacaEval annotations of the sample": _annotations(sample),
    }
    for name, kind in FILES.values():
        if kind in made:
            _write(root / "data" / name, made[kind])
    shutil.copy(sample_path(), root / "data" / "big.csv.gz")
    (root / "fast.yaml").write_text(FAST_CONFIG)
    data = root / "data" / "train.csv"
    fast = ["--config", root / "fast.yaml"]
    for args in (
        ["train", data, "--out", root / "model", *fast],
        ["train", root / "data" / "big.csv.gz", "--out", root / "model_whole"],
        ["cv", data, "--folds", "3", "--oof", root / "oof.csv", *fast],
    ):
        run = _run([*map(str, args)], root)
        assert run.returncode == 0, run.stderr
    return root


def _environment() -> dict[str, str]:
    # one OpenMP thread: LightGBM's spinning threads crowd a shared 2-core machine
    return {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "arenajudge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        env=_environment(),
    )


def _materialise(token: str, fixtures: Path, workdir: Path) -> str:
    name, kind = FILES[token]
    target = workdir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if "model trained on the whole sample" in kind:
        shutil.copytree(fixtures / "model_whole", target)
    elif "model" in kind:
        shutil.copytree(fixtures / "model", target)
    elif "cv --oof" in kind:
        shutil.copy(fixtures / "oof.csv", target)
    elif not target.exists():
        shutil.copy(fixtures / "data" / name, target)
    return name


def prepare(example: Example, fixtures: Path, workdir: Path) -> list[str]:
    """The example's arguments for ``workdir``, its input files made there."""
    _, name, _ = _command(example.args)
    args, previous = [], None
    for token in example.args:
        is_output = previous in OUTPUT_OPTIONS or (name == "cv" and previous == "--oof")
        if token in NAMES:
            token = NAMES[token]
        elif token in FILES:
            # an output keeps the page's spelling (`model/`) unless it lies outside workdir
            token = (
                (token if not token.startswith(("/", "..")) else FILES[token][0])
                if is_output
                else _materialise(token, fixtures, workdir)
            )
        elif PATH_LIKE.search(token) and not is_output and not token.startswith("-"):
            raise AssertionError(
                f"{example}: what is {token!r}? Map it in FILES or give "
                "the reason it cannot run in _not_run_reason"
            )
        args.append(token)
        previous = token
    if name in ("train", "cv") and "--config" not in args:
        shutil.copy(fixtures / "fast.yaml", workdir / "fast.yaml")
        args += ["--config", "fast.yaml"]
    return args


def _number_free(line: str) -> re.Pattern:
    parts = re.split(r"\d[\d,]*(?:\.\d+)?", line.strip())
    return re.compile(r"\d[\d,]*(?:\.\d+)?".join(re.escape(p) for p in parts))


RUNNABLE = [e for e in EXAMPLES if _not_run_reason(e) is None]


def test_some_examples_of_every_kind_run():
    assert len(RUNNABLE) >= 25
    assert {_command(e.args)[1] for e in RUNNABLE} >= {
        "validate",
        "train",
        "cv",
        "predict",
        "evaluate",
        "leaderboard",
        "winrate",
    }


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_documented_example_runs(example, fixtures, tmp_path):
    reason = _not_run_reason(example) or _missing_extra(example)
    if reason:
        pytest.skip(reason)
    args = prepare(example, fixtures, tmp_path)
    result = _run(args, tmp_path)
    assert result.returncode == 0, f"{example}\n{result.stderr[-3000:]}"
    printed = result.stdout + result.stderr
    for line in example.shown:
        assert _number_free(line).search(printed), (
            f"{example}: the page shows {line!r}; the command printed\n{printed[-3000:]}"
        )
