"""The HTML report: files it references, escaping, numbers, inputs and CLI.

Its speed on the real data is measured by benchmarks/report_speed.py, not here.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from arenajudge.cli import main
from arenajudge.data import LABELS, Battles, swap_proba
from arenajudge.errors import DataError, OutputExistsError
from arenajudge.report import Evidence, write_report

pytest.importorskip("matplotlib", reason="the report extra (matplotlib) is not installed")

DATA_ONLY = ["class_balance", "battles_per_model", "win_rate_by_length", "position_bias"]


def make_battles(n: int, seed: int = 0, *, sources: bool = True) -> Battles:
    """Labelled battles between three models; A wins more often when it is longer."""
    rng = np.random.default_rng(seed)
    words = rng.integers(1, 120, (n, 2))
    p_a = 1 / (1 + np.exp(-(words[:, 0] - words[:, 1]) / 30))
    label = np.where(rng.random(n) < 0.1, 2, (rng.random(n) > p_a).astype(int))
    models = np.array(["alpha", "beta", "gamma"], dtype=object)
    a = rng.integers(0, 3, n)
    return Battles(
        id=np.array([f"r{i}" for i in range(n)], dtype=object),
        prompt=[tuple(f"question {i} turn {t}" for t in range(1 + i % 4)) for i in range(n)],
        response_a=[("word " * k,) for k in words[:, 0]],
        response_b=[("text " * k,) for k in words[:, 1]],
        model_a=models[a],
        model_b=models[(a + 1) % 3],
        target=np.eye(3)[label],
        source=(np.array(["arena", "hh"], dtype=object)[np.arange(n) % 2] if sources else None),
        path="battles.csv",
    )


def noisy_proba(battles: Battles, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = 0.6 * battles.target + rng.dirichlet([1, 1, 1], len(battles))
    return raw / raw.sum(axis=1, keepdims=True)


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def image_sources(html: str) -> list[str]:
    parser = _Images()
    parser.feed(html)
    return parser.sources


def test_html_references_exactly_the_images_that_exist(tmp_path):
    battles = make_battles(200)
    proba = noisy_proba(battles)
    summary = write_report(
        Evidence(battles, proba, swap_proba(proba)), tmp_path / "r", predictor="model m"
    )
    html = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    sources = image_sources(html)
    assert len(sources) == 9 and sources == summary["plots"]
    for src in sources:
        assert not re.match(r"[a-z]+:|/", src), "images must be relative paths"
        assert (tmp_path / "r" / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "r").glob("*.png")) == sorted(sources)
    assert "<link" not in html and "<script" not in html  # readable offline, self-contained


def test_flip_rate_is_zero_when_symmetric_and_catches_a_position_bias(tmp_path):
    battles = make_battles(80)
    proba = noisy_proba(battles)
    symmetric = write_report(Evidence(battles, proba, swap_proba(proba)), tmp_path / "s")
    assert symmetric["flip_rate"] == 0.0

    def favour_first_shown(p):  # a predictor that adds 0.3 to whichever side comes first
        q = p + [0.3, 0.0, 0.0]
        return q / q.sum(axis=1, keepdims=True)

    forward = favour_first_shown(proba)
    on_swapped = favour_first_shown(swap_proba(proba))  # its answers on the swapped battles
    changed = forward.argmax(axis=1) != swap_proba(on_swapped).argmax(axis=1)
    assert changed.mean() > 0.1
    biased = write_report(Evidence(battles, forward, on_swapped), tmp_path / "b")
    assert biased["flip_rate"] == pytest.approx(changed.mean())
    html = (tmp_path / "b" / "index.html").read_text(encoding="utf-8")
    assert f"{changed.mean():.2%}" in html


def test_data_only_report_without_predictions(tmp_path):
    battles = make_battles(60, sources=False)
    summary = write_report(Evidence(battles), tmp_path / "r")
    assert summary["sections"] == DATA_ONLY and "metrics" not in summary
    html = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert "no predictions: pass --model" in html
    assert image_sources(html) == [f"{key}.png" for key in DATA_ONLY]


def test_worst_errors_are_escaped_and_truncated(tmp_path):
    battles = make_battles(50)
    attack = "<script>alert('x')</script>" + "long " * 400
    response_a = list(battles.response_a)
    response_a[7] = (attack,)
    battles = replace(battles, response_a=response_a)
    proba = np.tile([0.4, 0.4, 0.2], (50, 1))
    proba[7] = np.roll([0.998, 0.001, 0.001], battles.label[7] + 1)  # confidently wrong
    write_report(Evidence(battles, proba), tmp_path / "r", with_json=True)
    html = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    worst = json.loads((tmp_path / "r" / "report.json").read_text())["sections"]["worst_errors"][
        "rows"
    ]
    assert worst[0]["id"] == "r7"
    assert len(worst[0]["response_a"]) < 700 and worst[0]["response_a"].endswith("chars]")


def test_json_holds_the_numbers_behind_every_plot(tmp_path):
    battles = make_battles(300)
    proba = noisy_proba(battles)
    flipped = swap_proba(proba)
    flipped[:30] = proba[:30]  # 30 rows predict the same side wins whatever the order
    write_report(Evidence(battles, proba, flipped), tmp_path / "r", with_json=True)

    def reject(constant):
        raise ValueError(f"not valid JSON: {constant}")

    report = json.loads((tmp_path / "r" / "report.json").read_text(), parse_constant=reject)
    sections = report["sections"]
    assert set(sections) == {Path(p).stem for p in report["summary"]["plots"]} | {"worst_errors"}
    counts = np.bincount(battles.label, minlength=3)
    assert sections["class_balance"]["counts"] == counts.tolist()
    assert np.sum(sections["confusion"]["matrix"]) == 300
    assert np.array(sections["confusion"]["matrix"]).sum(axis=1).tolist() == counts.tolist()
    bias = sections["position_bias"]
    assert bias["a_share_of_decisive"] == pytest.approx(counts[0] / (counts[0] + counts[1]))
    changed = (proba[:30].argmax(axis=1) != swap_proba(proba[:30]).argmax(axis=1)).mean()
    assert bias["flip_rate"] == pytest.approx(changed * 30 / 300)
    by_source = {g["group"]: g["rows"] for g in sections["log_loss_by_source"]["groups"]}
    assert by_source == {"arena": 150, "hh": 150}
    assert sum(g["rows"] for g in sections["log_loss_by_turns"]["groups"]) == 300
    length = sections["win_rate_by_length"]
    assert length["a_win_rate"][-1] > 0.6 > 0.4 > length["a_win_rate"][0]
    assert report["summary"]["metrics"]["rows"] == 300


def test_existing_output_needs_force(tmp_path):
    battles = make_battles(40)
    write_report(Evidence(battles), tmp_path / "r")
    with pytest.raises(OutputExistsError):
        write_report(Evidence(battles), tmp_path / "r")
    write_report(Evidence(battles, noisy_proba(battles)), tmp_path / "r", force=True)
    assert len(list((tmp_path / "r").glob("*.png"))) == 9


def test_report_needs_labels(tmp_path):
    battles = make_battles(20).without_labels()
    with pytest.raises(DataError, match="has no labels"):
        write_report(Evidence(battles), tmp_path / "r")


# --------------------------------------------------------------------------- CLI
def write_csv(path: Path, battles: Battles) -> Path:
    pd.DataFrame(
        {
            "id": battles.id,
            "model_a": battles.model_a,
            "model_b": battles.model_b,
            "prompt": [json.dumps(list(p)) for p in battles.prompt],
            "response_a": [json.dumps(list(r)) for r in battles.response_a],
            "response_b": [json.dumps(list(r)) for r in battles.response_b],
            **{label: battles.target[:, k].astype(int) for k, label in enumerate(LABELS)},
        }
    ).to_csv(path, index=False)
    return path


def test_cli_report_with_oof_and_sources(tmp_path):
    battles = make_battles(120)
    data = write_csv(tmp_path / "data.csv", battles)
    pd.DataFrame({"id": battles.id, "source": battles.source}).to_csv(
        tmp_path / "src.csv", index=False
    )
    oof = pd.DataFrame(noisy_proba(battles), columns=list(LABELS))
    oof.insert(0, "fold", 0)
    oof.insert(0, "id", battles.id)
    oof.to_csv(tmp_path / "oof.csv", index=False)
    result = CliRunner().invoke(
        main,
        [
            "report",
            str(data),
            "--oof",
            str(tmp_path / "oof.csv"),
            "--sources",
            str(tmp_path / "src.csv"),
            "--out",
            str(tmp_path / "r"),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "flip_rate" not in summary and summary["predictor"].startswith("out-of-fold")
    html = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert "flip rate under an A/B swap is omitted" in html
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert {g["group"] for g in report["sections"]["log_loss_by_source"]["groups"]} == {
        "arena",
        "hh",
    }
    both = CliRunner().invoke(
        main,
        [
            "report",
            str(data),
            "--oof",
            str(tmp_path / "oof.csv"),
            "--model",
            str(tmp_path),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert both.exit_code == 2 and "not both" in both.stderr


def test_cli_report_with_model_shows_flip_rate(tmp_path):
    gbdt = pytest.importorskip("arenajudge.models.gbdt")
    battles = make_battles(150)
    gbdt.GBDTModel(n_estimators=20, holdout_share=0, min_child_samples=5).fit(battles).save(
        tmp_path / "model"
    )
    data = write_csv(tmp_path / "data.csv", battles)
    result = CliRunner().invoke(
        main,
        ["report", str(data), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "r")],
    )
    assert result.exit_code == 0, result.output
    assert "log loss" in result.stdout
    html = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert "A/B swap flip rate" in html and "predictor flip rate" in html
    assert "has no source column" in html and len(image_sources(html)) == 8
