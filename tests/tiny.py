"""Tiny random transformer models (hidden 32, 2 layers) and a BPE tokenizer trained on the
test strings, saved as local Hugging Face directories: CPU, offline, seconds per fit.
Shared by the transformer tests and the contract test that runs on every backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from arenajudge.data.schema import Battles

WORDS = [
    "good",
    "great",
    "fine",
    "clear",
    "helpful",
    "correct",
    "bad",
    "wrong",
    "poor",
    "vague",
    "rude",
    "useless",
    "the",
    "answer",
    "is",
    "a",
    "an",
    "to",
    "of",
    "question",
    "please",
    "explain",
    "why",
    "how",
    "what",
    "when",
    "cat",
    "dog",
    "tree",
    "river",
    "code",
    "python",
    "list",
    "number",
    "sum",
]
GOOD, BAD = WORDS[:6], WORDS[6:12]


def _texts(rng: np.random.Generator, n: int, words: list[str]) -> list[str]:
    return [" ".join(rng.choice(words, size=rng.integers(3, 12))) for _ in range(n)]


def make_battles(n: int = 40, seed: int = 0, soft: bool = False) -> Battles:
    """Battles whose winner is the response made of 'good' words; ~10% ties."""
    rng = np.random.default_rng(seed)
    prompts = [(f"question {i}: " + t,) for i, t in enumerate(_texts(rng, n, WORDS[12:]))]
    good, bad = _texts(rng, n, GOOD), _texts(rng, n, BAD)
    a_wins = rng.random(n) < 0.5
    tie = rng.random(n) < 0.1
    response_a = [(g,) if w else (b,) for g, b, w in zip(good, bad, a_wins)]
    response_b = [(b,) if w else (g,) for g, b, w in zip(good, bad, a_wins)]
    label = np.where(tie, 2, np.where(a_wins, 0, 1))
    target = np.eye(3)[label]
    if soft:
        target = 0.8 * target + 0.2 / 3
    return Battles(
        id=np.array([f"r{i}" for i in range(n)]),
        prompt=prompts,
        response_a=response_a,
        response_b=response_b,
        target=target,
    )


def tokenizer_for(encoder: bool, texts: list[str] | None = None, vocab_size: int = 600):
    """A byte-level BPE tokenizer trained on the test words (and ``texts``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [" ".join(WORDS), "Prompt: Response: Response A: Response B:\n\n question"] * 20 + list(
        texts or []
    )
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    specials = (
        {"pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
        if encoder
        else {"bos_token": "<s>", "eos_token": "</s>"}
    )  # Llama-like: no pad token
    return PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]", **specials)


def save_base(
    path: Path,
    model_type: str,
    texts: list[str] | None = None,
    max_positions: int = 128,
    hidden: int = 32,
) -> Path:
    """A tiny random ``model_type`` (bert, deberta-v2, roberta, llama) and its tokenizer
    (trained on the test words and ``texts``) saved in ``path``. bitsandbytes' 4-bit CPU
    kernels need ``hidden`` to be a multiple of 64."""
    import torch
    from transformers import AutoModel, BertConfig, DebertaV2Config, LlamaConfig, RobertaConfig

    tokenizer = tokenizer_for(
        encoder=model_type != "llama", texts=texts, vocab_size=4000 if texts else 600
    )
    shape = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=max_positions,
    )
    no_dropout = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config = {
        "bert": lambda: BertConfig(**shape, **no_dropout),
        "deberta-v2": lambda: DebertaV2Config(
            **shape,
            **no_dropout,
            relative_attention=True,
            position_buckets=16,
            position_biased_input=False,
            pos_att_type=["p2c", "c2p"],
        ),
        # positions from padding_idx + 1: 65 usable of 66
        "roberta": lambda: RobertaConfig(
            **{**shape, "max_position_embeddings": 66},
            **no_dropout,
            pad_token_id=tokenizer.pad_token_id,
        ),
        "llama": lambda: LlamaConfig(
            **shape,
            num_key_value_heads=1 if hidden == 32 else 2,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
    }[model_type]()
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_bases(root: Path) -> dict[str, Path]:
    """A tiny BERT, DeBERTa-v2 and Llama (with tokenizers) saved under ``root``."""
    return {name: save_base(root / name, name) for name in ("bert", "deberta-v2", "llama")}


FAST = dict(
    max_length=64,
    batch_size=8,
    lr=3e-3,
    epochs=1,
    val_fraction=0.0,
    head_dropout=0.0,
    lora_dropout=0.0,
    warmup_ratio=0.0,
    device="cpu",
)
"""Transformer settings that train a tiny model in seconds."""
BASE_OF = {"siamese": "deberta-v2", "cross": "bert", "llm": "llama"}
"""The tiny base each transformer backend is tested on."""


def save_llama_with_head(path: Path, head: str) -> Path:
    """A tiny Llama saved with a task head: ``causal`` (LlamaForCausalLM, for
    ``--head tokens``) or ``reward`` (LlamaForSequenceClassification, num_labels=1, the
    shape of a reward-model checkpoint)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    tokenizer = tokenizer_for(encoder=False)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_key_value_heads=1,
        num_labels=1,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(1)
    model = {"causal": LlamaForCausalLM, "reward": LlamaForSequenceClassification}[head](config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
