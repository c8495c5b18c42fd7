"""`--encoder`: vectors are keyed by the encoder's weights, the model loads once, and
pooling is the one `arenajudge embed` uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="--encoder needs the transformers extra")
transformers = pytest.importorskip("transformers", reason="--encoder needs the transformers extra")

from arenajudge.features.embeddings import HFEncoder, hf_encoder  # noqa: E402

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "dog",
    "ran",
    "far",
    "away",
    "good",
    "bad",
    "answer",
    "question",
]
TEXTS = ["the cat sat on a mat", "a dog ran far away", "", "good answer", "bad question"]


def save_tiny_bert(path: Path, seed: int, cls_sep: bool = False) -> Path:
    """A random 2-layer BertModel (hidden 16) and a word-level tokenizer, offline; with
    ``cls_sep`` the tokenizer wraps every text in [CLS] ... [SEP], as BERT's does."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if cls_sep:
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    transformers.BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_two_fine_tunes_with_one_config_get_their_own_vectors(tmp_path):
    first = save_tiny_bert(tmp_path / "first", seed=0)
    second = save_tiny_bert(tmp_path / "second", seed=1)
    assert (first / "config.json").read_bytes() == (second / "config.json").read_bytes()
    cache = tmp_path / "cache"
    vectors = [HFEncoder(p, cache_dir=cache).encode(TEXTS) for p in (first, second)]
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-3
    # a fresh encoder of the same weights reads the cache and gets the same vectors
    assert np.array_equal(HFEncoder(first, cache_dir=cache).encode(TEXTS), vectors[0])
    # a fine-tune saved over the first directory is a new encoder with new vectors
    save_tiny_bert(first, seed=2)
    again = HFEncoder(first, cache_dir=cache).encode(TEXTS)
    assert np.abs(again - vectors[0]).max() > 1e-3


def test_model_loads_once_across_encode_calls(tmp_path, monkeypatch):
    path = save_tiny_bert(tmp_path / "bert", seed=0)
    loads = []
    real = transformers.AutoModel.from_pretrained

    def counting(*args, **kwargs):
        loads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", counting)
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")  # the default cache folder
    # no GPU visible: the encoder runs on the CPU (a GPU, where there is one, is the
    # encoder's own choice; this pins the CPU answer whatever the test machine has)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    encoder = hf_encoder(path)
    for chunk in (TEXTS[:2], TEXTS[2:], ["cat", "dog"]):
        assert hf_encoder(path) is encoder
        out = encoder.encode(chunk)
        assert out.shape == (len(chunk), 16)
    assert len(loads) == 1
    assert str(next(encoder._model.parameters()).device) == "cpu"


def test_pooling_is_the_shared_mean_of_real_tokens(tmp_path):
    from arenajudge.features.pooling import mean_pool

    path = save_tiny_bert(tmp_path / "bert", seed=0)
    encoder = HFEncoder(path, cache_dir=tmp_path / "cache", device="cpu")
    ours = encoder.encode(TEXTS)
    assert np.all(ours[2] == 0)  # the empty text
    inputs = encoder._tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    hidden = encoder._model(**inputs).last_hidden_state
    reference = torch.nn.functional.normalize(mean_pool(hidden, inputs["attention_mask"]), dim=1)
    assert np.allclose(ours[:2], reference.detach().numpy(), atol=1e-5)
    # padding changes nothing: the short text alone gives the vector it got in a batch
    alone = HFEncoder(path, cache_dir=tmp_path / "other", device="cpu").encode(TEXTS[1:2])
    assert np.allclose(alone, ours[1:2], atol=1e-5)


def test_encoder_features_and_embed_command_run_one_implementation(tmp_path):
    # the CPU model's --encoder features and `arenajudge embed` differ only in their
    # settings (features.pooling.ENCODER_FEATURES / EMBED_COMMAND): a one-turn text
    # shorter than both lengths gets one vector, unit length for the features
    from dataclasses import replace

    from arenajudge.features.pooling import EMBED_COMMAND, ENCODER_FEATURES
    from arenajudge.models.transformer.embed import embed_battles
    from tiny import make_battles

    assert ENCODER_FEATURES.normalize and not EMBED_COMMAND.normalize
    path = save_tiny_bert(tmp_path / "bert", seed=0, cls_sep=True)
    texts = [t for t in TEXTS if t]
    battles = replace(
        make_battles(len(texts)),
        prompt=[(t,) for t in texts],
        response_a=[(t,) for t in texts[::-1]],
        response_b=[(t,) for t in texts],
    )
    columns, _ = embed_battles(battles, path, max_length=32, device="cpu")
    embedded = columns["prompt_emb"]
    features = HFEncoder(path, max_length=32, cache_dir=tmp_path / "cache", device="cpu")
    vectors = features.encode(texts)
    unit = embedded / np.linalg.norm(embedded, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, unit, atol=1e-6)
    assert np.abs(np.linalg.norm(embedded, axis=1) - 1).max() > 1e-3  # not normalised
