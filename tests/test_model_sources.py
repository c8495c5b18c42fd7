"""What ``--base`` and ``--encoder`` accept: a directory, a hub id from a Hugging Face
cache made on disk here (nothing touches the network: HF_HUB_OFFLINE=1), a .gguf file;
and the one-line errors for each when it cannot be found."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from arenajudge.errors import ConfigError
from arenajudge.model_sources import cache_root, resolve_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_hub_cache(root: Path, repo: str, model_dir: Path, commit: str = COMMIT) -> Path:
    """``model_dir``'s files laid out as huggingface_hub caches ``repo`` at ``commit``
    (with ``main`` pointing at it): the snapshot folder."""
    folder = root / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    shutil.copytree(model_dir, snapshot)
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub", reason="needs huggingface_hub (the transformers extra)")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub"


def fake_model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "llama"}')
    (path / "model.safetensors").write_bytes(b"weights")
    return path


def test_a_directory_is_itself(tmp_path):
    source = resolve_model(str(fake_model_dir(tmp_path / "m")))
    assert (source.kind, source.path, source.pinned) == (
        "directory",
        (tmp_path / "m").resolve(),
        str((tmp_path / "m").resolve()),
    )


def test_a_hub_id_resolves_from_the_cache_offline_and_pins_its_commit(offline_hub, tmp_path):
    snapshot = make_hub_cache(offline_hub, "org/tiny", fake_model_dir(tmp_path / "m"))
    for given in ("org/tiny", f"org/tiny@{COMMIT}", "org/tiny@main"):
        source = resolve_model(given)
        assert (source.kind, source.path, source.revision) == ("hub", snapshot.resolve(), COMMIT)
        assert source.pinned == f"org/tiny@{COMMIT}"
        assert source.record() == {
            "given": given,
            "kind": "hub",
            "name": f"org/tiny@{COMMIT}",
            "revision": COMMIT,
        }


def test_a_local_directory_wins_over_a_hub_id_of_the_same_spelling(
    offline_hub, tmp_path, monkeypatch
):
    make_hub_cache(offline_hub, "org/tiny", fake_model_dir(tmp_path / "m"))
    monkeypatch.chdir(tmp_path)
    local = fake_model_dir(tmp_path / "org" / "tiny")
    assert resolve_model("org/tiny").path == local.resolve()


@pytest.mark.parametrize("given", ["org/absent", "org/absent@v2"])
def test_a_hub_id_in_no_cache_names_the_id_and_both_fixes(offline_hub, given):
    with pytest.raises(ConfigError) as caught:
        resolve_model(given)
    message = str(caught.value)
    assert message.startswith(f"--base {given}: HF_HUB_OFFLINE=1 and it is not in the cache")
    assert "`hf download org/absent" in message and "give a local model directory" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "given, message",
    [
        ("/no/such/dir", "no such directory, and not a Hugging Face hub id"),
        ("not a name", "no such directory, and not a Hugging Face hub id"),
        ("a/b/c", "no such directory, and not a Hugging Face hub id"),
        ("missing.gguf", "missing.gguf: no such file"),
    ],
)
def test_names_that_are_nothing_say_what_to_give(given, message):
    with pytest.raises(ConfigError, match=message):
        resolve_model(given)


def test_a_file_that_is_no_gguf_is_refused(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a file, not a model directory, a hub id"):
        resolve_model(str(tmp_path / "weights.bin"))


def test_the_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("ARENAJUDGE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "arenajudge"
    monkeypatch.setenv("ARENAJUDGE_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"


def test_train_with_a_hub_id_the_cache_lacks_is_one_line(offline_hub, tmp_path):
    pytest.importorskip("torch", reason="needs the transformers extra")
    pytest.importorskip("peft", reason="needs the transformers extra")
    from click.testing import CliRunner

    from arenajudge.cli import main

    data = Path(__file__).parents[1] / "src" / "arenajudge" / "datasets" / "sample.csv.gz"
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(data),
            "--out",
            str(tmp_path / "m"),
            "--backend",
            "llm",
            "--base",
            "google/gemma-2-9b-it",
        ],
    )
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith(
        "error: --base google/gemma-2-9b-it: HF_HUB_OFFLINE=1 and it is not in the cache"
    )
    assert not (tmp_path / "m").exists()


def test_embed_and_the_cpu_models_encoder_take_a_hub_id(offline_hub, tmp_path):
    pytest.importorskip("torch", reason="needs the transformers extra")
    pytest.importorskip("transformers", reason="needs the transformers extra")
    from arenajudge.features.embeddings import hf_encoder
    from arenajudge.models.transformer.embed import embed_battles
    from tiny import make_battles, save_base

    snapshot = make_hub_cache(offline_hub, "org/bert", save_base(tmp_path / "bert", "bert"))
    columns, metadata = embed_battles(make_battles(6), "org/bert", max_length=32, device="cpu")
    assert metadata["encoder"] == f"org/bert@{COMMIT}"
    assert {name: array.shape for name, array in columns.items()} == {
        "prompt_emb": (6, 32),
        "response_a_emb": (6, 32),
        "response_b_emb": (6, 32),
    }
    assert hf_encoder("org/bert").path == snapshot.resolve()
