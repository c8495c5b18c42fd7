"""Transformer backends on tiny random models (hidden 32, 2 layers) and a BPE tokenizer
trained here on the test strings: CPU, offline, a few seconds per fit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from arenajudge.data.schema import Battles, swap_proba
from arenajudge.errors import ConfigError, MissingDependencyError, ModelLoadError
from arenajudge.models.transformer.packing import Packer, keep_latest, split_budget

torch = pytest.importorskip("torch", reason="needs the transformers extra")
pytest.importorskip("transformers", reason="needs the transformers extra")
pytest.importorskip("peft", reason="needs the transformers extra")
pytest.importorskip("accelerate", reason="needs the transformers extra")

from arenajudge.models.registry import build_model, load_model  # noqa: E402
from tiny import BASE_OF, FAST, WORDS, make_battles, save_base, tiny_bases, tokenizer_for  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine OpenMP's
    spinning threads make them 5x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def bases(tmp_path_factory) -> dict[str, Path]:
    return tiny_bases(tmp_path_factory.mktemp("bases"))


def fit(kind: str, base: Path, battles: Battles | None = None, **options) -> object:
    return build_model(kind, {**FAST, "base": str(base), **options}).fit(
        battles if battles is not None else make_battles()
    )


# ------------------------------------------------------------------------- packing
@pytest.fixture(scope="module")
def tokenizer():
    return tokenizer_for(encoder=True)


def test_split_budget_never_drops_a_side_and_treats_a_and_b_alike():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        need = tuple(int(v) for v in rng.integers(0, 400, size=3))
        budget = int(rng.integers(12, 300))
        share = float(rng.uniform(0.05, 0.5))
        for pair in (False, True):
            p, a, b = split_budget(need, budget, share, pair)
            assert all(x <= y for x, y in zip((p, a, b), need))
            assert all(x >= 1 for x, y in zip((p, a, b), need) if y > 0)
            assert (p + max(a, b) if pair else p + a + b) <= budget
            assert split_budget((need[0], need[2], need[1]), budget, share, pair) == (p, b, a)
            if sum(need) > budget and not pair:  # nothing wasted but an odd token
                assert p + a + b >= budget - 1


def test_keep_latest_keeps_the_latest_turns_and_the_head_of_a_long_one():
    turns = [[1, 1, 1], [2, 2], [3, 3, 3, 3]]
    assert keep_latest(turns, 100, [0]) == ([1, 1, 1, 0, 2, 2, 0, 3, 3, 3, 3], 0)
    assert keep_latest(turns, 7, [0]) == ([2, 2, 0, 3, 3, 3, 3], 1)
    assert keep_latest(turns, 6, [0]) == ([2, 0, 3, 3, 3, 3], 1)  # older turn: its tail
    assert keep_latest(turns, 2, [0]) == ([3, 3], 2)  # latest turn: its head


def test_packing_fits_max_length_keeps_every_side_and_commutes_with_swap(tokenizer):
    long = " ".join(WORDS * 30)
    battles = Battles(
        id=np.array(["a", "b", "c"]),
        prompt=[(long,), ("hi", "more please"), ("",)],
        response_a=[("good answer",), ("first", long), (long, long)],
        response_b=[(long,), ("x", "y"), ()],
    )
    for pair in (False, True):
        packer = Packer(tokenizer, 64, 0.3, pair=pair)
        packed, stats = packer.pack(battles)
        swapped, _ = packer.pack(battles.swap())
        for battle, other, original in zip(
            packed, swapped, zip(battles.prompt, battles.response_a, battles.response_b)
        ):
            assert all(
                len(ids) == len(segments) <= 64 for ids, segments in packer.sequences(battle)
            )
            for ids, turns in zip((battle.prompt, battle.response_a, battle.response_b), original):
                assert bool(ids) == any(t for t in turns)  # truncated, never dropped
            assert packer.sequences(other) == packer.sequences(battle, swapped=True)
        kept = packed[1].response_a  # the latest turn alone is too long: its head
        assert kept == tokenizer(long, add_special_tokens=False)["input_ids"][: len(kept)]
        assert stats.rows == 3 and stats.truncated_rows >= 2
        assert stats.response_a_truncated >= 1 and stats.prompt_truncated >= 1
        assert 0 < stats.to_dict()["kept_token_share"] < 1


def test_too_small_max_length_is_a_config_error(tokenizer):
    with pytest.raises(ConfigError, match="max-length"):
        Packer(tokenizer, 12, 0.3, pair=False)


# -------------------------------------------------------------------------- models
@pytest.fixture(scope="module", params=["siamese", "cross", "llm"])
def fitted(request, bases):
    """(kind, model, parameters before training, battles): 40 battles, 4 epochs."""
    from arenajudge.models.transformer import trainer

    kind = request.param
    before: dict[str, tuple[bool, object]] = {}

    class Snapshot(trainer.Trainer):
        def __init__(self, net, *args, **kwargs):
            before.update(
                {n: (p.requires_grad, p.detach().clone()) for n, p in net.named_parameters()}
            )
            super().__init__(net, *args, **kwargs)

    battles = make_battles(40)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "Trainer", Snapshot)
        model = fit(
            kind,
            bases[BASE_OF[kind]],
            battles,
            epochs=4,
            eval_every=5,
            lr=1e-2 if kind == "llm" else 3e-3,
        )
    return kind, model, before, battles


def test_training_changes_every_trainable_parameter_and_only_those(fitted):
    kind, model, before, _ = fitted
    after = dict(model.net_.named_parameters())
    trainable = [n for n, (grad, _) in before.items() if grad]
    assert trainable and set(before) == set(after)
    unchanged = [n for n in trainable if torch.equal(before[n][1], after[n].detach())]
    assert unchanged == []
    frozen_changed = [
        n
        for n, (grad, value) in before.items()
        if not grad and not torch.equal(value, after[n].detach())
    ]
    assert frozen_changed == []
    if kind == "llm":  # LoRA: the decoder's own weights stay frozen
        assert all("lora_" in n or n.startswith("head.") for n in trainable)


def test_loss_falls_on_a_tiny_overfit_set(fitted):
    _, model, _, battles = fitted
    losses = [record["train_loss"] for record in model.history_]
    assert len(losses) >= 4 and losses[-1] < 0.6 * losses[0]
    accuracy = (model.predict_proba(battles).argmax(1) == battles.label).mean()
    assert accuracy >= 0.8


def test_predictions_are_probabilities_and_swap_symmetric(fitted):
    _, model, _, battles = fitted
    proba = model.predict_proba(battles)
    assert proba.shape == (len(battles), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(battles.swap()), swap_proba(proba), atol=1e-5)


def test_save_then_load_gives_identical_predictions(fitted, tmp_path):
    kind, model, _, battles = fitted
    model.save(tmp_path / "model")
    saved = {p.name for p in (tmp_path / "model").iterdir()}
    assert {"manifest.json", "tokenizer", "head.safetensors", "calibration.json"} <= saved
    assert ("adapter" if kind == "llm" else "body") in saved
    assert not list((tmp_path / "model").rglob("*.bin")) and not list(
        (tmp_path / "model").rglob("*.pt")
    )  # safetensors only, no pickle
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["backend"] == kind and manifest["training"]["truncation"]["rows"] == 40
    loaded = load_model(tmp_path / "model")
    assert type(loaded) is type(model)
    np.testing.assert_allclose(
        loaded.predict_proba(battles), model.predict_proba(battles), atol=1e-6
    )
    np.testing.assert_allclose(
        loaded.predict_proba(battles, tie_rate=0.3),
        model.predict_proba(battles, tie_rate=0.3),
        atol=1e-6,
    )


def test_resume_continues_from_the_saved_step_like_an_uninterrupted_run(
    bases, tmp_path, monkeypatch
):
    from arenajudge.models.transformer import trainer

    battles = make_battles(24)  # 48 samples: 6 steps per epoch
    options = dict(epochs=2, eval_every=4, head_dropout=0.1)  # dropout draws from the RNG
    whole = fit("siamese", bases["bert"], battles, checkpoint_dir=str(tmp_path / "a"), **options)
    original, calls = trainer.batch_loss, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:  # mid-epoch, after the step-4 checkpoint
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "batch_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit("siamese", bases["bert"], battles, checkpoint_dir=str(tmp_path / "b"), **options)
    monkeypatch.undo()
    state = json.loads((tmp_path / "b" / "state.json").read_text())["state"]
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (4, 0, 4)

    resumed = fit("siamese", bases["bert"], battles, checkpoint_dir=str(tmp_path / "b"), **options)
    assert resumed.validation_["resumed_from"] == 4
    assert [r["step"] for r in resumed.history_] == [4, 8, 12]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["state.json", "step-00000012"]
    np.testing.assert_array_equal(resumed.predict_proba(battles), whole.predict_proba(battles))
    with pytest.raises(ConfigError, match="other settings or data"):
        fit(
            "siamese",
            bases["bert"],
            make_battles(24, seed=1),
            checkpoint_dir=str(tmp_path / "b"),
            **options,
        )


def test_early_stopping_keeps_the_best_checkpoint(bases, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from arenajudge.models.transformer import trainer

    scores = iter([0.9, 0.7, 0.8, 0.85, 0.6])
    monkeypatch.setattr(trainer, "log_loss", lambda y, proba: next(scores))
    model = fit(
        "cross",
        bases["bert"],
        make_battles(40),
        val_fraction=0.2,
        eval_every=1,
        patience=2,
        max_steps=20,
        checkpoint_dir=str(tmp_path / "ckpt"),
    )
    assert [r["val_log_loss"] for r in model.history_] == [0.9, 0.7, 0.8, 0.85]
    assert model.validation_["best_step"] == 2 and model.validation_["stopped_early"]
    assert model.validation_["rows"] == 8 and model.validation_["log_loss_raw"] == 0.7
    folder = tmp_path / "ckpt" / "step-00000004"
    best, last = (
        load_file(folder / name) for name in ("best.safetensors", "trainable.safetensors")
    )
    weights = dict(model.net_.named_parameters())
    assert all(torch.equal(weights[name].detach(), value) for name, value in best.items())
    assert any(not torch.equal(best[name], last[name]) for name in best)


def test_soft_labels_use_kl_and_gradient_accumulation_counts_steps(bases, monkeypatch):
    from arenajudge.models.transformer import trainer

    original, modes = trainer.batch_loss, set()

    def spy(logits, target, weight, soft):
        modes.add(soft)
        return original(logits, target, weight, soft)

    monkeypatch.setattr(trainer, "batch_loss", spy)
    model = fit("llm", bases["llama"], make_battles(40, soft=True), grad_accum=2)
    assert modes == {True}
    assert model.validation_["steps"] == 5  # 80 samples, batches of 8, 2 per step


def test_batch_loss_is_cross_entropy_or_kl():
    from arenajudge.models.transformer.trainer import batch_loss

    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    one_hot = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    weight = torch.ones(2)
    ce = torch.nn.functional.cross_entropy(logits, one_hot.argmax(1))
    assert torch.allclose(batch_loss(logits, one_hot, weight, soft=False), ce)
    assert torch.allclose(batch_loss(logits, one_hot, weight, soft=True), ce)  # KL = CE
    soft = torch.softmax(logits, dim=1)
    assert batch_loss(logits, soft, weight, soft=True).abs() < 1e-6
    assert torch.allclose(
        batch_loss(logits, one_hot, torch.tensor([1.0, 0.0]), soft=False),
        torch.nn.functional.cross_entropy(logits[:1], torch.tensor([0])),
    )


def test_merged_lora_bundle_needs_no_base_and_an_adapter_bundle_does(bases, tmp_path):
    import shutil

    battles = make_battles(16)
    base = shutil.copytree(bases["llama"], tmp_path / "base")
    merged = fit("llm", base, battles, max_steps=2, merge_lora=True)
    adapter = fit("llm", base, battles, max_steps=2)
    expected = merged.predict_proba(battles)
    merged.save(tmp_path / "merged")
    adapter.save(tmp_path / "adapter")
    assert not (tmp_path / "merged" / "adapter").exists()
    shutil.rmtree(base)
    np.testing.assert_allclose(
        load_model(tmp_path / "merged").predict_proba(battles), expected, atol=1e-5
    )
    with pytest.raises(ModelLoadError, match="LoRA adapter over --base .* which is gone"):
        load_model(tmp_path / "adapter")


# ------------------------------------------------------------- errors that say what to do
@pytest.mark.parametrize(
    "kind, options, message",
    [
        ("siamese", {}, "needs --base MODEL"),
        (
            "siamese",
            {"base": "/nonexistent/model"},
            "no such directory, and not a Hugging Face hub id",
        ),
        ("siamese", {"base": "/nonexistent/model.gguf"}, "no such file"),
        ("llm", {"base": "{bert}"}, "bert model, not a decoder LM; --backend llm needs"),
        ("cross", {"base": "{llama}"}, "holds a decoder LM .llama.; use --backend llm"),
        ("siamese", {"base": "{bert}", "warmup": 1}, "unknown config key.*warmup"),
        ("siamese", {"base": "{bert}", "epochs": 2.5}, "epochs: expected an integer, got 2.5"),
        ("siamese", {"base": "{bert}", "lr": "fast"}, "lr: expected a number, got 'fast'"),
        ("siamese", {"base": "{bert}", "lr": -1.0}, "lr=-1.0 is out of range"),
        ("siamese", {"base": "{bert}", "load_in": "4bit"}, "--load-in 4bit is for --backend llm"),
        ("cross", {"base": "{bert}", "merge_lora": True}, "--merge-lora needs LoRA adapters"),
        ("nope", {}, "unknown backend 'nope'"),
    ],
)
def test_bad_options_fail_before_training(bases, kind, options, message):
    options = {
        k: v.format(bert=bases["bert"], llama=bases["llama"]) if isinstance(v, str) else v
        for k, v in options.items()
    }
    with pytest.raises(ConfigError, match=message):
        build_model(kind, options)


def test_fit_refuses_unlabelled_battles_and_misshapen_weights(bases):
    from arenajudge.errors import DataError

    model = build_model("siamese", {**FAST, "base": str(bases["bert"])})
    with pytest.raises(DataError, match="has no label columns"):
        model.fit(make_battles(8).without_labels())
    with pytest.raises(ConfigError, match="sample_weight must be one finite, non-negative number"):
        model.fit(make_battles(8), sample_weight=np.ones(3))


def test_non_hf_base_directory(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="not a Hugging Face model directory"):
        build_model("siamese", {"base": str(tmp_path)})


def test_max_length_beyond_the_encoder_positions(bases):
    with pytest.raises(ConfigError, match="exceeds the 128 positions"):
        fit("siamese", bases["bert"], max_length=256)


@pytest.mark.parametrize(
    "module, kind, options",
    [
        ("torch", "siamese", {}),
        ("transformers", "cross", {}),
        ("peft", "llm", {}),
        ("bitsandbytes", "llm", {"load_in": "4bit"}),
    ],
)
def test_missing_dependency_says_what_to_install(bases, monkeypatch, module, kind, options):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    base = bases["llama" if kind == "llm" else "bert"]
    install = r"arenajudge\[llm\]" if module == "bitsandbytes" else r"arenajudge\[transformers\]"
    with pytest.raises(MissingDependencyError, match=rf"{module}.*pip install {install}"):
        build_model(kind, {"base": str(base), **options})


def test_cli_and_library_import_without_torch():
    import subprocess

    code = (
        "import sys; import arenajudge.cli, arenajudge.models.transformer, "
        "arenajudge.models.transformer.embed; "
        "heavy = {'torch', 'transformers', 'accelerate', 'peft'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -------------------------------------------------------------------------- embed
def write_data(battles: Battles, path: Path) -> Path:
    """``battles`` as a Kaggle-layout CSV."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "id": battles.id,
            **{
                name: [json.dumps(list(turns)) for turns in getattr(battles, name)]
                for name in ("prompt", "response_a", "response_b")
            },
        }
    )
    if battles.target is not None:
        for column, values in zip(
            ("winner_model_a", "winner_model_b", "winner_tie"), battles.target.T
        ):
            frame[column] = values
    frame.to_csv(path, index=False)
    return path


def embedding_battles() -> Battles:
    return Battles(
        id=np.array(["x", "y", "z"]),
        prompt=[("hello there",), ("why", "explain the answer please"), ("",)],
        response_a=[("good answer",), ("the cat",), ()],
        response_b=[("a dog",), ("good answer",), ("list of number",)],
    )


@pytest.mark.parametrize("base_name", ["bert", "llama"])
def test_embed_writes_mean_pooled_states_aligned_by_id(bases, tmp_path, base_name):
    from click.testing import CliRunner
    from transformers import AutoModel, AutoTokenizer

    from arenajudge.cli import main
    from arenajudge.data.embeddings import read_embeddings

    battles = embedding_battles()
    data, out = write_data(battles, tmp_path / "data.csv"), tmp_path / "emb.parquet"
    args = [
        "embed",
        str(data),
        "--base",
        str(bases[base_name]),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--batch-size",
        "2",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    vectors, metadata = read_embeddings(out, battles)
    assert vectors.shape == (3, 3, 32) and vectors.dtype == np.float32
    assert metadata["dim"] == 32 and metadata["model_type"] == base_name
    np.testing.assert_array_equal(vectors[0, 1], vectors[1, 2])  # same text, same vector
    assert not vectors[2, 1].any() and vectors[2, 2].any()  # an empty side embeds as zeros
    reordered, _ = read_embeddings(out, battles.take([2, 0]))
    np.testing.assert_array_equal(reordered, vectors[[2, 0]])

    # batched and padded equals one text alone through the model
    tokenizer = AutoTokenizer.from_pretrained(bases[base_name])
    body = AutoModel.from_pretrained(bases[base_name]).eval()
    ids = tokenizer("list of number", add_special_tokens=False)["input_ids"]
    specials = (
        ([tokenizer.cls_token_id], [tokenizer.sep_token_id])
        if base_name == "bert"
        else ([tokenizer.bos_token_id], [tokenizer.eos_token_id])
    )
    with torch.no_grad():
        alone = (
            body(input_ids=torch.tensor([specials[0] + ids + specials[1]]))
            .last_hidden_state.mean(1)[0]
            .numpy()
        )
    np.testing.assert_allclose(vectors[2, 2], alone, atol=1e-5)

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "already exists; pass --force" in again.output


def test_read_embeddings_refuses_other_files_and_missing_ids(bases, tmp_path):
    import pandas as pd

    from arenajudge.data.embeddings import read_embeddings
    from arenajudge.errors import DataError
    from arenajudge.models.transformer.embed import embed_battles, write_embeddings

    battles = embedding_battles()
    vectors, metadata = embed_battles(battles.take([0, 1]), bases["bert"], device="cpu")
    write_embeddings(battles.id[:2], vectors, metadata, tmp_path / "emb.parquet")
    with pytest.raises(DataError, match="row id z: has no embedding for 1 battle"):
        read_embeddings(tmp_path / "emb.parquet", battles)
    pd.DataFrame({"id": ["x"]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(DataError, match="is not an embeddings file"):
        read_embeddings(tmp_path / "other.parquet", battles)


def test_embed_without_the_extra_is_one_line(bases, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from arenajudge.cli import main

    monkeypatch.setitem(sys.modules, "torch", None)
    data = write_data(embedding_battles(), tmp_path / "data.csv")
    result = CliRunner().invoke(
        main,
        ["embed", str(data), "--base", str(bases["bert"]), "--out", str(tmp_path / "e.parquet")],
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: embed needs torch, transformers, accelerate; torch is not installed. "
        "Install them with `pip install arenajudge[transformers]`"
    ]


# ---------------------------------------------------------------- data-parallel launch
LAUNCHED = """
import json, os, sys
from arenajudge.data import read_battles
from arenajudge.models.registry import build_model

data, base, out = sys.argv[1:]
model = build_model("siamese", {"base": base, "max_length": 64, "batch_size": 8,
                                "lr": 3e-3, "val_fraction": 0.25, "eval_every": 2})
model.fit(read_battles(data))
model.save(out)
print("RESULT", json.dumps({"rank": int(os.environ["RANK"]), "steps": model.validation_["steps"],
                            "history": model.history_}))
"""


def _accelerate_launch(*args: str):
    """``accelerate launch --multi_gpu --num_processes 2 ARGS``: on a machine without a
    GPU this runs two gloo processes. Returns the finished subprocess."""
    import os
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(port),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_accelerate_launch_trains_data_parallel_on_two_cpu_processes(bases, tmp_path):
    """Two processes each train on half the batches and agree on validation."""
    from arenajudge.data import read_battles

    battles = make_battles(40)
    data = write_data(battles, tmp_path / "data.csv")
    (tmp_path / "train.py").write_text(LAUNCHED)
    run = _accelerate_launch(
        str(tmp_path / "train.py"), str(data), str(bases["bert"]), str(tmp_path / "model")
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = sorted(
        (
            json.loads(line.split(" ", 1)[1])
            for line in run.stdout.splitlines()
            if line.startswith("RESULT ")
        ),
        key=lambda r: r["rank"],
    )
    assert [r["rank"] for r in results] == [0, 1]
    # 30 training battles x 2 orders = 60 samples: 8 batches of 8, 4 per process
    assert results[0]["steps"] == results[1]["steps"] == 4
    first, second = (r["history"] for r in results)
    assert [h["val_log_loss"] for h in first] == [h["val_log_loss"] for h in second]
    assert [h["train_loss"] for h in first] != [h["train_loss"] for h in second]
    proba = load_model(tmp_path / "model").predict_proba(read_battles(data))
    assert proba.shape == (40, 3)


def test_accelerate_launch_runs_the_train_command(bases, tmp_path):
    """`accelerate launch -m arenajudge train ...`, as the README shows, with no code change."""
    data = write_data(make_battles(40), tmp_path / "data.csv")
    model = tmp_path / "model"
    run = _accelerate_launch(
        "-m",
        "arenajudge",
        "train",
        str(data),
        "--out",
        str(model),
        "--backend",
        "siamese",
        "--base",
        str(bases["bert"]),
        "--max-length",
        "64",
        "--batch-size",
        "8",
        "--lr",
        "3e-3",
        "--val-fraction",
        "0.25",
        "--eval-every",
        "2",
        "--device",
        "cpu",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("trained on 40 battles") == 1  # rank 0 reports, once
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["metrics"]["validation"]["steps"] == 4  # half of the 8 batches each
    assert load_model(model).predict_proba(make_battles(40)).shape == (40, 3)


def test_cli_trains_predicts_and_evaluates_a_transformer_backend(bases, tmp_path):
    from click.testing import CliRunner

    from arenajudge.cli import main

    data = write_data(make_battles(), tmp_path / "train.csv")
    runner = CliRunner()
    trained = runner.invoke(
        main,
        [
            "train",
            str(data),
            "--out",
            str(tmp_path / "m"),
            "--backend",
            "cross",
            "--base",
            str(bases["bert"]),
            "--max-length",
            "64",
            "--batch-size",
            "8",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--val-fraction",
            "0",
        ],
    )
    assert trained.exit_code == 0, trained.output
    predicted = runner.invoke(
        main,
        ["predict", str(data), "--model", str(tmp_path / "m"), "--out", str(tmp_path / "sub.csv")],
    )
    assert predicted.exit_code == 0, predicted.output
    evaluated = runner.invoke(
        main, ["evaluate", str(data), "--model", str(tmp_path / "m"), "--format", "json"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["overall"]["rows"] == len(make_battles())


# ---------------------------------------------------------------------- the GPU path
@pytest.mark.parametrize(
    "capability, precision, half",
    [
        ((7, 5), "auto", torch.float16),
        ((8, 0), "auto", torch.bfloat16),
        ((8, 0), "fp16", torch.float16),
        ((7, 5), "fp32", None),
    ],
)
def test_precision_follows_real_hardware_support(monkeypatch, capability, precision, half):
    """A T4 (sm75) reports emulated bf16 as supported; auto must still pick fp16 there,
    for autocast, a decoder's weights and the 4-bit compute dtype alike."""
    from arenajudge.models.transformer import devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert devices.autocast_dtype(precision, torch.device("cuda")) is half
    assert devices.body_dtype(precision, "auto", decoder=True) == (half or torch.float32)
    assert devices.body_dtype(precision, "auto", decoder=False) == torch.float32
    compute = devices.quantization("4bit", precision, torch.device("cuda")).bnb_4bit_compute_dtype
    assert compute == (half or torch.float32)


def test_ray_actors_ask_for_a_gpu_each_for_a_transformer_model(monkeypatch):
    ray_engine = pytest.importorskip("arenajudge.engines.ray_engine", reason="needs the ray extra")
    seen = {}

    class Stop(Exception):
        pass

    class Dataset:
        def map_batches(self, fn, **kwargs):
            seen.update(kwargs)
            raise Stop

    monkeypatch.setattr(ray_engine.ray, "cluster_resources", lambda: {"CPU": 8.0, "GPU": 2.0})
    monkeypatch.setattr(ray_engine.ray.data, "read_datasource", lambda source: Dataset())
    monkeypatch.setattr(ray_engine, "_BattleFileSource", lambda *args, **kwargs: None)
    for transformer, expected in ((True, (1, 2)), (False, (0, 8))):
        with pytest.raises(Stop):
            ray_engine._score("x.csv", "m", "csv", {}, 0, None, 16, {}, gpu=transformer)
        assert (seen["num_gpus"], seen["compute"].max_size) == expected


def test_qlora_keeps_non_reentrant_gradient_checkpointing(bases, monkeypatch):
    import peft
    from transformers import AutoModel

    from arenajudge.models.transformer import networks
    from arenajudge.models.transformer.config import NetworkConfig

    seen = {}

    def prepare(body, **kwargs):
        seen.update(kwargs)
        return body

    monkeypatch.setattr(peft, "prepare_model_for_kbit_training", prepare)
    body = AutoModel.from_pretrained(bases["llama"])
    networks.add_lora(body, NetworkConfig(kind="llm", load_in="4bit"), True)
    assert seen == {
        "use_gradient_checkpointing": True,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
    }


def test_load_in_without_a_bitsandbytes_backend_is_one_line(bases, tmp_path, monkeypatch):
    """Where the installed bitsandbytes cannot quantize on the device, one line before any
    weights load; with a backend (bitsandbytes 0.50 has a CPU one) it trains, see
    test_quantized_lora_trains_and_predicts_on_the_cpu."""
    bnb = pytest.importorskip("bitsandbytes.functional", reason="needs bitsandbytes")
    from click.testing import CliRunner

    from arenajudge.cli import main

    def no_backend(*args, **kwargs):
        raise NotImplementedError("no kernel for this device")

    monkeypatch.setattr(bnb, "quantize_4bit", no_backend)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    data = write_data(make_battles(8), tmp_path / "d.csv")
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
            str(bases["llama"]),
            "--load-in",
            "4bit",
        ],
    )
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: --load-in 4bit: the installed bitsandbytes ")
    assert "cannot quantize on cpu (no kernel for this device)" in line
    assert line.endswith("or use --load-in 16bit")


@pytest.mark.parametrize("bits", ["4bit", "8bit"])
def test_quantized_lora_trains_and_predicts_on_the_cpu(bases, tmp_path, bits):
    """QLoRA without a GPU: the body's linear layers are bitsandbytes' on the CPU, the
    adapters train, and the saved model reloads quantized with the same predictions."""
    pytest.importorskip("bitsandbytes", reason="needs bitsandbytes (the llm extra)")
    import bitsandbytes as bnb

    base = save_base(tmp_path / "llama64", "llama", hidden=64)
    battles = make_battles(16)
    model = build_model("llm", {**FAST, "base": str(base), "load_in": bits, "max_steps": 2}).fit(
        battles
    )
    quantized = (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    assert any(isinstance(m, quantized) for m in model.net_.body.modules())
    expected = model.predict_proba(battles)
    assert np.isfinite(expected).all()
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert any(isinstance(m, quantized) for m in again.net_.body.modules())
    np.testing.assert_allclose(again.predict_proba(battles), expected, atol=1e-5)


def long_battles(n: int = 12) -> Battles:
    battles = make_battles(n)
    return Battles(
        id=battles.id,
        prompt=[(" ".join(WORDS * 2),)] * n,
        response_a=[(turns[0] + " " + " ".join(WORDS),) for turns in battles.response_a],
        response_b=[(turns[0] + " " + " ".join(WORDS),) for turns in battles.response_b],
        target=battles.target,
    )


def test_roberta_trains_at_its_position_limit(bases, tmp_path):
    """RoBERTa numbers positions from padding_idx + 1: 66 position embeddings read 65."""
    from tiny import save_base

    roberta = save_base(tmp_path / "roberta", "roberta")
    model = fit("cross", roberta, long_battles(), max_length=65, max_steps=2)
    assert model.truncation_["truncated_rows"] == 12  # the sequences reach the limit
    assert model.predict_proba(long_battles()).shape == (12, 3)
    with pytest.raises(ConfigError, match="exceeds the 65 positions.*use --max-length 65"):
        fit("cross", roberta, long_battles(), max_length=66, max_steps=1)


def test_every_setting_is_reachable_from_a_yaml_file_and_lands_in_the_manifest(bases, tmp_path):
    from dataclasses import fields

    import yaml
    from click.testing import CliRunner

    from arenajudge.cli import main
    from arenajudge.models.transformer.config import TransformerConfig

    settings = {
        "kind": "llm",
        "base": str(bases["llama"]),
        "max_length": 48,
        "prompt_share": 0.25,
        "symmetric": False,
        "head": "mlp",
        "head_hidden": 8,
        "head_dropout": 0.2,
        "lora": True,
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.1,
        "lora_targets": "q_proj,v_proj",
        "load_in": "16bit",
        "merge_lora": True,
        "attn_implementation": "eager",
        "epochs": 2,
        "max_steps": 3,
        "batch_size": 4,
        "grad_accum": 2,
        "lr": 1e-3,
        "weight_decay": 0.02,
        "warmup_ratio": 0.2,
        "schedule": "linear",
        "max_grad_norm": 0.5,
        "loss": "kl",
        "swap_augment": False,
        "val_fraction": 0.25,
        "eval_every": 1,
        "patience": 1,
        "checkpoint_dir": str(tmp_path / "ckpt"),
        "gradient_checkpointing": True,
        "precision": "fp32",
        "device": "cpu",
        "seed": 3,
        "zero_shot": False,
        "prompt_format": "plain",
    }
    assert set(settings) == {f.name for f in fields(TransformerConfig)}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(settings))
    data = write_data(make_battles(24), tmp_path / "d.csv")
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(data),
            "--out",
            str(tmp_path / "m"),
            "--backend",
            "llm",
            "--config",
            str(tmp_path / "run.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["config"] == settings
    assert manifest["metrics"]["validation"]["steps"] == 3


def test_cv_checkpoints_each_fold_in_its_own_directory(bases, tmp_path):
    from click.testing import CliRunner

    from arenajudge.cli import main

    data = write_data(make_battles(24), tmp_path / "d.csv")
    result = CliRunner().invoke(
        main,
        [
            "cv",
            str(data),
            "--folds",
            "2",
            "--backend",
            "siamese",
            "--base",
            str(bases["bert"]),
            "--max-length",
            "64",
            "--max-steps",
            "2",
            "--val-fraction",
            "0",
            "--device",
            "cpu",
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["fold-0", "fold-1"]
    for fold in ("fold-0", "fold-1"):
        assert (
            json.loads((tmp_path / "ckpt" / fold / "state.json").read_text())["state"]["step"] == 2
        )


# ------------------------------------------------------------ prediction-time control
@pytest.fixture(scope="module")
def saved_llm(bases, tmp_path_factory):
    """A tiny llm adapter bundle over a copy of the base: (model dir, base dir, data CSV)."""
    import shutil

    root = tmp_path_factory.mktemp("saved_llm")
    base = shutil.copytree(bases["llama"], root / "base")
    fit("llm", base, make_battles(24), max_steps=3, lr=1e-2).save(root / "model")
    return root / "model", base, write_data(make_battles(40, seed=5), root / "data.csv")


def test_token_budget_batches_stay_within_the_budget():
    from arenajudge.models.transformer.batches import token_budget_batches

    lengths = np.array([50, 40, 40, 30, 10, 10, 10, 5])
    batches = token_budget_batches(lengths, n_sequences=2, max_tokens=200)
    assert np.concatenate(batches).tolist() == list(range(8))
    assert all(len(b) * 2 * lengths[b].max() <= 200 for b in batches)
    assert [len(b) for b in batches] == [2, 2, 4]  # 200 // (2 * its longest) rows each
    assert token_budget_batches(np.array([300, 10]), 1, 100)[0].tolist() == [0]  # alone


def test_tta_uncertain_share_between_none_and_full(saved_llm):
    from arenajudge.models.transformer.config import PredictOptions
    from arenajudge.models.transformer.model import LLMModel

    model_dir, _, _ = saved_llm
    battles = make_battles(40, seed=5)

    def proba(**options):
        return LLMModel.load(model_dir, PredictOptions(**options)).predict_proba(battles)

    none, full, default = proba(tta="none"), proba(tta="full"), proba()
    assert np.abs(none - full).max() > 1e-4  # the swapped pass changes something
    np.testing.assert_array_equal(default, full)
    np.testing.assert_array_equal(proba(tta="uncertain:0"), none)
    np.testing.assert_array_equal(proba(tta="uncertain:1"), full)
    half = proba(tta="uncertain:0.5")  # other batches than full: equal up to padding
    swapped = np.isclose(half, full, atol=1e-6, rtol=0).all(axis=1)
    kept = np.isclose(half, none, atol=1e-6, rtol=0).all(axis=1)
    assert (swapped != kept).all() and swapped.sum() == 20
    raw_none = LLMModel.load(model_dir, PredictOptions(tta="none"))
    top = raw_none.predict_proba(battles).max(axis=1)
    assert top[swapped].max() <= top[~swapped].min()  # the least sure got the swap
    budget = proba(max_tokens_per_batch=300, batch_size=3)
    np.testing.assert_allclose(budget, full, atol=1e-6)
    with pytest.raises(ConfigError, match="--tta 'sometimes'"):
        proba(tta="sometimes")


def test_predict_time_options_on_the_cli_and_a_moved_base(saved_llm, tmp_path):
    import pandas as pd
    from click.testing import CliRunner

    from arenajudge.cli import main

    model_dir, base, data = saved_llm
    runner = CliRunner()
    before = runner.invoke(
        main,
        ["predict", str(data), "--model", str(model_dir), "--out", str(tmp_path / "before.csv")],
    )
    assert before.exit_code == 0, before.output
    moved = base.rename(base.parent / "moved")
    try:
        gone = runner.invoke(
            main,
            ["predict", str(data), "--model", str(model_dir), "--out", str(tmp_path / "gone.csv")],
        )
        assert gone.exit_code == 2 and "--base MODEL" in gone.output
        after = runner.invoke(
            main,
            [
                "predict",
                str(data),
                "--model",
                str(model_dir),
                "--out",
                str(tmp_path / "after.csv"),
                "--base",
                str(moved),
                "--device",
                "cpu",
                "--batch-size",
                "3",
                "--max-tokens-per-batch",
                "400",
                "--max-length",
                "96",
                "--attn-implementation",
                "eager",
                "--tta",
                "uncertain:0.5",
            ],
        )
        assert after.exit_code == 0, after.output
        evaluated = runner.invoke(
            main,
            [
                "evaluate",
                str(data),
                "--model",
                str(model_dir),
                "--base",
                str(moved),
                "--tta",
                "none",
                "--format",
                "json",
            ],
        )
        assert evaluated.exit_code == 0, evaluated.output
        same = runner.invoke(
            main,
            [
                "predict",
                str(data),
                "--model",
                str(model_dir),
                "--out",
                str(tmp_path / "same.csv"),
                "--base",
                str(moved),
            ],
        )
        assert same.exit_code == 0, same.output
    finally:
        moved.rename(base)
    assert (tmp_path / "same.csv").read_text() == (tmp_path / "before.csv").read_text()
    assert pd.read_csv(tmp_path / "after.csv").shape == (40, 4)
    bad = runner.invoke(
        main,
        [
            "predict",
            str(data),
            "--model",
            str(model_dir),
            "--out",
            str(tmp_path / "bad.csv"),
            "--tta",
            "uncertain:2",
        ],
    )
    assert bad.exit_code == 2 and bad.output.startswith("error: --tta 'uncertain:2'")


def test_accelerate_launch_predict_matches_one_process_exactly(saved_llm, tmp_path):
    """`accelerate launch -m arenajudge predict`: 2 processes share the batches and the
    main process writes one submission, identical to the 1-process one."""
    from click.testing import CliRunner

    from arenajudge.cli import main

    model_dir, _, data = saved_llm
    options = ["--batch-size", "4"]  # 80 samples: 20 batches, 10 per process
    one = CliRunner().invoke(
        main,
        [
            "predict",
            str(data),
            "--model",
            str(model_dir),
            "--out",
            str(tmp_path / "one.csv"),
            *options,
        ],
    )
    assert one.exit_code == 0, one.output
    run = _accelerate_launch(
        "-m",
        "arenajudge",
        "predict",
        str(data),
        "--model",
        str(model_dir),
        "--out",
        str(tmp_path / "two.csv"),
        *options,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count("wrote 40 predictions") == 1
    assert (tmp_path / "two.csv").read_text() == (tmp_path / "one.csv").read_text()


# ------------------------------------------------- reward-model base, encoder LoRA, token head
def base_weights(body) -> dict:
    """The base model's own weights of a (LoRA-wrapped) body, by their unwrapped names."""
    return {
        name.replace("base_model.model.", "").replace(".base_layer", ""): value
        for name, value in body.state_dict().items()
        if "lora_" not in name
    }


def test_a_reward_model_checkpoint_works_as_base(tmp_path):
    """A LlamaForSequenceClassification (num_labels=1) checkpoint: its backbone is used,
    its score head left out for ours."""
    from safetensors.torch import load_file

    from tiny import save_llama_with_head

    reward = save_llama_with_head(tmp_path / "reward", "reward")
    saved = load_file(next(reward.glob("*.safetensors")))
    assert saved["score.weight"].shape[0] == 1
    model = fit("llm", reward, make_battles(16), max_steps=2, merge_lora=True)
    body = base_weights(model.net_.body)
    assert torch.equal(
        body["layers.0.mlp.down_proj.weight"], saved["model.layers.0.mlp.down_proj.weight"]
    )
    assert not any("score" in name for name in body)
    model.save(tmp_path / "model")
    np.testing.assert_allclose(
        load_model(tmp_path / "model").predict_proba(make_battles(16)),
        model.predict_proba(make_battles(16)),
        atol=1e-6,
    )


@pytest.mark.parametrize("kind", ["siamese", "cross"])
def test_lora_on_an_encoder_trains_adapters_only(bases, tmp_path, kind):
    from safetensors.torch import load_file

    model = fit(kind, bases["bert"], make_battles(16), max_steps=3, lora=True, lora_r=4)
    original = load_file(bases["bert"] / "model.safetensors")
    body = base_weights(model.net_.body)
    assert set(original) <= set(body)
    assert all(torch.equal(body[name], value) for name, value in original.items())
    trainable = [n for n, p in model.net_.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    model.save(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter" / "adapter_config.json").is_file()
    np.testing.assert_allclose(
        load_model(tmp_path / "adapter").predict_proba(make_battles(16)),
        model.predict_proba(make_battles(16)),
        atol=1e-6,
    )
    merged = fit(kind, bases["bert"], make_battles(16), max_steps=1, lora=True, merge_lora=True)
    merged.save(tmp_path / "merged")
    assert (tmp_path / "merged" / "body").is_dir()


def test_token_head_scores_the_label_words_and_trains(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from arenajudge.models.transformer.networks import label_token_ids
    from tiny import save_base, save_llama_with_head

    causal = save_llama_with_head(tmp_path / "causal", "causal")
    battles = make_battles(40)
    untrained = fit("llm", causal, battles, head="tokens", max_steps=1, lr=1e-12)
    lm = AutoModelForCausalLM.from_pretrained(causal).eval()
    ids = label_token_ids(AutoTokenizer.from_pretrained(causal))
    # before training, the head is the LM's own scores of "A", "B", "tie" at the last token
    sample = untrained._packer().sequences(untrained._packer().pack(battles.take([0]))[0][0])[0]
    with torch.no_grad():
        lm_logits = lm(input_ids=torch.tensor([sample[0]])).logits[0, -1, ids]
        net_logits = untrained.net_(
            *(torch.tensor([[x]]) for x in (sample[0], [1] * len(sample[0]), sample[1]))
        )[0]
    torch.testing.assert_close(net_logits, lm_logits, atol=1e-4, rtol=1e-4)

    model = fit("llm", causal, battles, head="tokens", epochs=4, lr=1e-2)
    losses = [record["train_loss"] for record in model.history_]
    assert losses[-1] < losses[0]
    model.save(tmp_path / "model")
    np.testing.assert_allclose(
        load_model(tmp_path / "model").predict_proba(battles),
        model.predict_proba(battles),
        atol=1e-6,
    )
    bare = save_base(tmp_path / "bare", "llama")  # a LlamaModel: no LM head saved
    with pytest.raises(ConfigError, match="--head tokens needs --base .* LM head"):
        fit("llm", bare, battles, head="tokens", max_steps=1)


def test_zero_shot_trains_nothing_and_calibrates_out_of_sample(tmp_path):
    from tiny import save_llama_with_head

    causal = save_llama_with_head(tmp_path / "causal", "causal")
    battles = make_battles(40)
    model = fit("llm", causal, battles, head="tokens", zero_shot=True)
    # nothing in the network moved: no optimizer step, no history
    assert model.history_ == []
    assert model.validation_["zero_shot"] is True
    assert model.validation_["steps"] == 0
    # the calibration was fitted on cross-fitted folds of every training battle
    assert model.validation_["rows"] == len(battles)
    proba = model.predict_proba(battles)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    # swap symmetry of the untouched base under the symmetric default
    np.testing.assert_allclose(model.predict_proba(battles.swap()), swap_proba(proba), atol=1e-6)
    model.save(tmp_path / "model")
    saved = {p.name for p in (tmp_path / "model").iterdir()}
    assert not saved & {"model.safetensors", "adapter_model.safetensors"}  # names its base
    np.testing.assert_array_equal(load_model(tmp_path / "model").predict_proba(battles), proba)
