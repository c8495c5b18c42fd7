"""The HTTP judge service: schema, every class of bad input, readiness, micro-batching."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import arenajudge

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")

from fastapi.testclient import TestClient

from arenajudge.data import LABELS, Battles, read_battles
from arenajudge.errors import DataError, MissingDependencyError
from arenajudge.models.contract import PreferenceModel
from arenajudge.models.gbdt import GBDTModel
from arenajudge.models.manifest import manifest_sha256
from arenajudge.models.registry import load_model
from arenajudge.serve import app as serve_app
from arenajudge.serve import run as serve_run
from arenajudge.serve.app import Settings, battles_from_request, create_app
from arenajudge.serve.limits import json_depth
from arenajudge.serve.model_info import HIDDEN_PATH, without_battle_keys
from arenajudge.serve.schema import JudgeRequest
from conftest import synthetic_frame, wait_until
from test_serve_batcher import SECRET, GatedModel, MarkedModel


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    synthetic_frame(n=160).to_csv(root / "train.csv", index=False)
    GBDTModel(n_estimators=20, holdout_share=0, embedding_dim=8).fit(
        read_battles(root / "train.csv")
    ).save(root / "tiny_model")
    return root / "tiny_model"


@pytest.fixture(scope="module")
def model(model_dir) -> PreferenceModel:
    return load_model(model_dir)


@pytest.fixture()
def client(model_dir, model):
    settings = Settings(str(model_dir), max_body=20_000, max_batch=5)
    with TestClient(create_app(settings, model)) as test_client:
        yield test_client


def _battle(i: int = 0, **fields) -> dict:
    return {
        "id": f"b{i}",
        "prompt": "say something",
        "response_a": "short",
        "response_b": "a much longer answer with many words in it",
        **fields,
    }


def _one_turn(*texts: str) -> list[tuple[str, ...]]:
    return [(text,) for text in texts]


# --------------------------------------------------------------------------- schema
def test_one_battle_gets_probabilities_verdict_and_model_identity(client, model, model_dir):
    response = client.post("/v1/judge", json={"battles": _battle()})
    assert response.status_code == 200
    body = response.json()
    manifest_bytes = (model_dir / "manifest.json").read_bytes()
    assert body["model"] == {
        "name": "tiny_model",
        "backend": "gbdt",
        "version": arenajudge.__version__,
        "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
    }
    # the hash an ensemble or cascade records for its members: one implementation
    assert body["model"]["manifest_sha256"] == manifest_sha256(model_dir)
    [result] = body["results"]
    proba = np.array([result[label] for label in LABELS])
    expected = model.predict_proba(
        Battles(
            id=np.array(["x"], dtype=object),
            prompt=_one_turn("say something"),
            response_a=_one_turn("short"),
            response_b=_one_turn("a much longer answer with many words in it"),
        )
    )[0]
    np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-12)
    assert result["id"] == "b0"
    assert result["verdict"] == ("model_a", "model_b", "tie")[int(proba.argmax())]
    assert result["swapped"] is None


def test_a_list_keeps_its_order_and_swap_and_tie_rate_apply(client, model):
    battles = [_battle(i, response_a="word " * i) for i in range(4)]
    plain = client.post("/v1/judge", json={"battles": battles, "swap": True}).json()
    assert [r["id"] for r in plain["results"]] == ["b0", "b1", "b2", "b3"]
    for result in plain["results"]:
        # GBDTModel is swap-symmetric, so the swapped order gives the same answer
        for label in LABELS:
            assert result["swapped"][label] == pytest.approx(result[label], abs=1e-12)
    tied = client.post("/v1/judge", json={"battles": battles, "tie_rate": 0.9}).json()
    assert all(t["winner_tie"] > p["winner_tie"] for t, p in zip(tied["results"], plain["results"]))
    expected = model.predict_proba(
        battles_from_request(JudgeRequest.model_validate({"battles": battles})),
        tie_rate=0.9,
    )
    got = [[r[label] for label in LABELS] for r in tied["results"]]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_turn_lists_nulls_and_lone_surrogates_are_accepted(client):
    body = (
        '{"battles": [{"id": "\\ud800x", "prompt": ["hi", null, "again"], '
        '"response_a": ["a", "\\udc00"], "response_b": []}]}'
    )
    response = client.post(
        "/v1/judge", content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["results"][0]["id"] == "\ufffdx"
    request = JudgeRequest.model_validate(json.loads(body))
    assert request.battles[0].prompt == ("hi", "", "again")
    assert request.battles[0].response_a == ("a", "\ufffd")
    assert request.battles[0].response_b == ()


def test_model_endpoint_and_docs(client, model_dir):
    body = client.get("/v1/model").json()
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert body["manifest"]["artifacts"] == manifest["artifacts"]
    assert body["manifest"]["config"] == manifest["config"]
    assert body["name"] == "tiny_model"
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/v1/judge" in schema["paths"]


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [*map(str, value), *(s for item in value.values() for s in _strings(item))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []


@pytest.fixture()
def revealing_model_dir(model_dir, tmp_path) -> Path:
    """The tiny model with a manifest that records every kind of path a backend writes."""
    import shutil

    copy = tmp_path / "revealing_model"
    shutil.copytree(model_dir, copy)
    (tmp_path / "local_encoder").mkdir()
    manifest = json.loads((copy / "manifest.json").read_text())
    base = {"given": "models/my-base", "kind": "directory", "name": "/srv/alice/my-base"}
    hub = {"given": "org/minilm", "kind": "hub", "name": "org/minilm@abc123"}
    manifest["config"].update(
        base="models/my-base", checkpoint_dir="ckpt", encoder=str(tmp_path / "local_encoder")
    )
    manifest["training"].update(
        base=base,
        teacher=hub,
        embeddings={"file": "emb.parquet", "encoder": "C:\\Users\\alice\\enc"},
        platform={"executable": "/usr/bin/python3"},
    )
    manifest["members"] = [
        {"path": path, "backend": "gbdt", "manifest_sha256": "0" * 64}
        for path in ("../gbdt_a", "~/gbdt_b")
    ]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_model_endpoint_hides_paths_and_interpreter_unless_asked(
    revealing_model_dir, model, tmp_path
):
    import platform

    settings = Settings(str(revealing_model_dir))
    with TestClient(create_app(settings, model)) as client:
        shown = client.get("/v1/model").json()
    strings = _strings(shown)
    revealing = [
        s
        for s in strings
        if str(tmp_path) in s
        or "alice" in s
        or "gbdt_" in s
        or s in ("models/my-base", "ckpt", "emb.parquet", "/usr/bin/python3")
    ]
    assert revealing == []
    assert platform.python_version() not in strings and "python" not in strings
    assert shown["manifest"]["training"]["teacher"]["name"] == "org/minilm@abc123"
    assert shown["manifest"]["training"]["base"]["kind"] == "directory"
    assert shown["manifest"]["config"]["base"] == HIDDEN_PATH
    manifest = json.loads((revealing_model_dir / "manifest.json").read_text())
    assert (
        shown["manifest_sha256"]
        == hashlib.sha256((revealing_model_dir / "manifest.json").read_bytes()).hexdigest()
    )
    full = Settings(str(revealing_model_dir), show_paths=True)
    with TestClient(create_app(full, model)) as client:
        assert client.get("/v1/model").json()["manifest"] == without_battle_keys(manifest)


@pytest.mark.parametrize("show_paths", [False, True])
def test_model_endpoint_never_sends_the_trained_battles_keys(model_dir, model, show_paths):
    """8 bytes a trained battle: large, and a client could test whether a battle was in
    the training data; evaluate and report read them from the disk."""
    assert "battle_keys" in json.loads((Path(model_dir) / "manifest.json").read_text())["training"]
    settings = Settings(str(model_dir), show_paths=show_paths)
    with TestClient(create_app(settings, model)) as client:
        shown = client.get("/v1/model").json()["manifest"]
    assert "battle_keys" not in shown["training"] and shown["training"]["rows"] > 0


# --------------------------------------------------------------------------- bad input
JSON = {"content-type": "application/json"}
MALFORMED = {
    "bad JSON": (b'{"battles": [', 422, "body"),
    "invalid escape": (b'{"battles": [{"prompt": "\\uZZZZ"}]}', 422, "body"),
    "invalid UTF-8 bytes": (b'{"battles": "\xff\xfe"}', 400, None),
    "huge integer literal": (b'{"battles": [], "tie_rate": ' + b"1" * 5_000 + b"}", 400, None),
    "not an object": (b"[1, 2]", 422, "body"),
    "battles not a list": (b'{"battles": "x"}', 422, "battles"),
    "prompt a number": (
        json.dumps({"battles": [_battle(), _battle(1, prompt=3)]}).encode(),
        422,
        "battles[1].prompt",
    ),
    "turn a number": (
        json.dumps({"battles": [_battle(response_b=["ok", 2])]}).encode(),
        422,
        "battles[0].response_b",
    ),
    "id a number": (json.dumps({"battles": [_battle(id=7)]}).encode(), 422, "battles[0].id"),
    "swap a string": (json.dumps({"battles": [_battle()], "swap": "yes"}).encode(), 422, "swap"),
    "tie_rate out of range": (
        json.dumps({"battles": [_battle()], "tie_rate": 1.5}).encode(),
        422,
        "tie_rate",
    ),
    "missing field": (
        json.dumps({"battles": [_battle(), {"prompt": "p", "response_a": "a"}]}).encode(),
        422,
        "battles[1].response_b",
    ),
    "missing battles": (b"{}", 422, "battles"),
    "unknown field": (
        json.dumps({"battles": [_battle()], "tie-rate": 0.2}).encode(),
        422,
        "tie-rate",
    ),
    "empty list": (b'{"battles": []}', 422, "battles"),
    "huge string": (json.dumps({"battles": [_battle(prompt="x" * 30_000)]}).encode(), 413, None),
    "too many battles": (
        json.dumps({"battles": [_battle(i) for i in range(6)]}).encode(),
        413,
        None,
    ),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_payloads_get_their_4xx(client, case):
    payload, status, field = MALFORMED[case]
    response = client.post("/v1/judge", content=payload, headers=JSON)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    if field is not None:
        assert field in [error["field"] for error in detail]
        assert all(error["message"] for error in detail)


def test_a_chunked_body_over_the_limit_gets_413(client):
    chunks = (b"x" * 5_000 for _ in range(10))  # no Content-Length: sent chunked
    response = client.post("/v1/judge", content=chunks, headers=JSON)
    assert response.status_code == 413


DEEP = b'{"battles": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    None,
]


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_deep_nesting_gets_422_whatever_the_content_type(client, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    response = client.post("/v1/judge", content=DEEP, headers=headers)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["field"] == "body" and "5,001 levels deep" in error["message"]


def test_brackets_inside_strings_are_not_nesting(client):
    texts = '[{"x\\"' * 100  # a backslash before a quote, then brackets: still text
    response = client.post("/v1/judge", json={"battles": _battle(prompt=texts)})
    assert response.status_code == 200, response.text
    assert json_depth(json.dumps({"a": [texts, [texts]]}).encode()) == 3


def test_a_body_without_json_content_type_is_explained(client):
    response = client.post(
        "/v1/judge",
        content=json.dumps({"battles": [_battle()]}),
        headers={"content-type": "text/plain"},
    )
    assert response.status_code == 422
    assert "Content-Type: application/json" in response.json()["detail"][0]["message"]


# --------------------------------------------------------------------------- readiness
def test_health_answers_while_a_batch_is_scored(model_dir, model):
    gated = GatedModel(model)
    gated.gate.clear()
    app = create_app(Settings(str(model_dir)), gated)
    with TestClient(app) as client, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.post, "/v1/judge", json={"battles": _battle()})
        assert gated.entered.wait(timeout=10)
        assert client.get("/health").json() == {"status": "ok", "model": "tiny_model"}
        # answered while predict_proba still waits at the gate, not once it gave up
        assert not gated.left.is_set() and not pending.done()
        gated.gate.set()
        assert pending.result(timeout=10).status_code == 200


def test_health_is_503_until_the_model_is_loaded(model_dir, model, monkeypatch):
    loaded = threading.Event()

    def slow_load(path, runtime=None):
        assert loaded.wait(timeout=10)
        return model

    monkeypatch.setattr(serve_app, "load_ready_model", slow_load)
    with TestClient(create_app(Settings(str(model_dir)))) as client:
        response = client.get("/health")
        assert (response.status_code, response.json()["status"]) == (503, "loading")
        assert client.post("/v1/judge", json={"battles": _battle()}).status_code == 503
        loaded.set()
        wait_until(lambda: client.get("/health").status_code == 200)
        assert client.post("/v1/judge", json={"battles": _battle()}).status_code == 200


def test_a_failed_load_is_reported_by_health(model_dir, monkeypatch):
    def broken_load(path, runtime=None):
        raise OSError("disk on fire")

    monkeypatch.setattr(serve_app, "load_ready_model", broken_load)
    with TestClient(create_app(Settings(str(model_dir)))) as client:
        wait_until(lambda: client.get("/health").json()["status"] != "loading")
        assert client.get("/health").json()["status"] == "failed"


def test_texts_never_reach_the_log_even_when_scoring_fails(model_dir, model, caplog):
    gated = GatedModel(model)
    caplog.set_level(logging.DEBUG)
    with TestClient(
        create_app(Settings(str(model_dir)), gated), raise_server_exceptions=False
    ) as client:
        assert client.post("/v1/judge", json={"battles": _battle(prompt=SECRET)}).status_code == 200
        gated.fail = True
        response = client.post("/v1/judge", json={"battles": _battle(prompt=SECRET)})
        assert response.status_code == 500
        assert SECRET not in response.text
        gated.fail = False
        assert client.post("/v1/judge", json={"battles": _battle()}).status_code == 200
    assert "failed: RuntimeError" in caplog.text
    assert SECRET not in caplog.text


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
def test_failures_answer_422_or_500_and_log_a_traceback_only_at_debug(
    model_dir, model, caplog, level
):
    caplog.set_level(level, logger="arenajudge")
    app = create_app(Settings(str(model_dir)), MarkedModel(model))
    with TestClient(app, raise_server_exceptions=False) as client:
        bad = client.post("/v1/judge", json={"battles": _battle(prompt="BAD " + SECRET)})
        assert bad.status_code == 422
        [error] = bad.json()["detail"]
        assert error["field"] == "battles" and "column prompt" in error["message"]
        broken = client.post("/v1/judge", json={"battles": _battle(prompt="BOOM " + SECRET)})
        assert broken.status_code == 500 and SECRET not in broken.text
        assert client.post("/v1/judge", json={"battles": _battle()}).status_code == 200
    assert ("Traceback" in caplog.text) == (level == logging.DEBUG)
    assert SECRET not in caplog.text


def test_the_service_keeps_no_feature_rows_of_the_battles_it_judges(client, model):
    from arenajudge.features.builder import feature_builder

    cache = feature_builder(model.config.features)._cache
    before = len(cache)
    for i in range(20):  # distinct battles, as a long-running service sees them
        battles = [_battle(i, prompt=f"question {i} part {k}") for k in range(5)]
        assert client.post("/v1/judge", json={"battles": battles}).status_code == 200
    assert len(cache) == before


# --------------------------------------------------------------------------- client, CLI
@pytest.fixture(scope="module")
def live_url(model_dir, model):
    """A real uvicorn server on a free loopback port, in a thread."""
    import uvicorn

    config = uvicorn.Config(
        create_app(Settings(str(model_dir), max_batch=5), model),
        host="127.0.0.1",
        port=0,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_client_judges_over_http(live_url, client):
    from arenajudge.client import Judge

    with Judge(live_url) as judge:
        assert judge.health()
        assert judge.model()["backend"] == "gbdt"
        one = judge("say something", "short", ["a much longer answer", "in two turns"], swap=True)
        assert set(one) >= {*LABELS, "verdict", "swapped"}
        many = judge.judge([_battle(i) for i in range(3)], tie_rate=0.2)
        direct = client.post(
            "/v1/judge", json={"battles": [_battle(i) for i in range(3)], "tie_rate": 0.2}
        ).json()["results"]
        assert many == direct
        with pytest.raises(DataError, match=r"battles\[1\]\.prompt"):
            judge.judge([_battle(), _battle(prompt=None)])
        with pytest.raises(DataError, match="at most 5"):
            judge.judge([_battle(i) for i in range(6)])
        with pytest.raises(DataError, match="byte limit"):  # answered, not a reset
            judge("x" * 3_000_000, "a", "b")
        assert judge.health()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_plain_client_sending_a_whole_oversized_body_reads_the_413(live_url, chunked):
    import urllib.error
    import urllib.request

    # 10 MB: over what the kernel buffers on loopback, so an unread rest means a reset
    body = json.dumps({"battles": [_battle(prompt="x" * 10_000_000)]}).encode()
    data = (body[i : i + 65_536] for i in range(0, len(body), 65_536)) if chunked else body
    request = urllib.request.Request(f"{live_url}/v1/judge", data=data, headers=JSON)
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=30)
    assert answer.value.code == 413
    assert "byte limit" in json.loads(answer.value.read())["detail"]


def test_client_reports_an_unreachable_server():
    from arenajudge.client import Judge
    from arenajudge.errors import ArenaJudgeError

    judge = Judge("http://127.0.0.1:9", timeout=2)
    assert not judge.health()
    with pytest.raises(ArenaJudgeError, match="cannot reach"):
        judge.model()


def test_serve_command_fails_cleanly_on_a_bad_model_dir(tmp_path):
    from click.testing import CliRunner

    from arenajudge.cli import main

    result = CliRunner().invoke(main, ["serve", "--model", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "not a model directory" in result.output


def test_serve_command_passes_show_paths_and_log_level(model_dir, monkeypatch):
    from click.testing import CliRunner

    from arenajudge.cli import main

    calls = []
    monkeypatch.setattr(
        serve_run, "serve", lambda settings, **options: calls.append((settings, options))
    )
    for flags in ([], ["--show-paths", "--log-level", "debug"]):
        result = CliRunner().invoke(main, ["serve", "--model", str(model_dir), *flags])
        assert result.exit_code == 0, result.output
    [(plain, plain_options), (shown, shown_options)] = calls
    assert (plain.show_paths, plain_options["log_level"]) == (False, "info")
    assert (shown.show_paths, shown_options["log_level"]) == (True, "debug")


def test_serve_command_on_a_busy_port_is_one_error_line(model_dir):
    import socket

    from click.testing import CliRunner

    from arenajudge.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", "--model", str(model_dir), "--port", str(port)])
    assert result.exit_code == 2, result.output
    [line] = result.output.splitlines()
    assert line.startswith("error: ")
    assert f"127.0.0.1:{port}" in line and "in use" in line and "--port" in line


def test_workers_start_from_an_importable_app_factory(model_dir, monkeypatch):
    """``--workers`` hands uvicorn an import path; it must name the factory's real home."""
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append((app, options)))
    monkeypatch.setenv(serve_run.CONFIG_ENV, "")  # restored (unset) after the test
    settings = Settings(str(model_dir), max_batch=7)
    serve_run.serve(settings, port=0, workers=2)
    [(path, options)] = calls
    assert options["factory"] is True and options["workers"] == 2
    module, name = path.split(":")
    app = getattr(importlib.import_module(module), name)()
    assert app.state.service.settings == settings


def test_missing_fastapi_names_the_extra(model_dir, monkeypatch):
    from click.testing import CliRunner

    from arenajudge.cli import main

    monkeypatch.setitem(sys.modules, "fastapi", None)
    for name in ("arenajudge.serve.app", "arenajudge.serve.run"):
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(MissingDependencyError, match=r"arenajudge\[serve\]"):
        importlib.import_module("arenajudge.serve.app")
    result = CliRunner().invoke(main, ["serve", "--model", str(model_dir)])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "arenajudge[serve]" in result.output


def test_the_package_the_batcher_and_the_cli_import_no_web_framework():
    """FastAPI, pydantic and uvicorn load only when the service is used: not for
    ``import arenajudge.serve``, the micro-batcher, the limits or ``arenajudge --help``."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "import arenajudge, arenajudge.serve, arenajudge.serve.batcher, arenajudge.serve.limits\n"
        "from arenajudge.cli import main\n"
        "for args in (['--help'], ['serve', '--help']):\n"
        "    assert CliRunner().invoke(main, args).exit_code == 0\n"
        "print(sorted({'fastapi', 'starlette', 'pydantic', 'uvicorn'} & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
