"""Budgeted multi-turn packing: battles -> token-id sequences of at most ``max_length``.

Each side (prompt, response A, response B) keeps its latest turns. The token budget is
split so that no side is ever dropped: the prompt is first granted up to
``prompt_share`` of it, the responses share the rest equally (a short one hands its
unused room to the other), and whatever is still left goes back to the prompt. The
split treats A and B alike, so packing a swapped battle gives the swapped packing.

Layouts (markers are plain text, tokenised once; ``<s>``/``</s>`` are the model's own
CLS/SEP or BOS/EOS tokens)::

    pair (siamese), two sequences:  <s> Prompt: p  Response: a </s>
                                    <s> Prompt: p  Response: b </s>
    single (cross, llm), one:       <s> Prompt: p  Response A: a  Response B: b </s>

With a chat template (``--prompt-format chat``, the llm backend's default when its base
has one) the same parts are the one user turn of a conversation, between a short task
and the question, and the sequence ends where the assistant's answer would start, so
the LM's next token is its verdict (``--head tokens``)::

    chat (llm):  <template's opening> TASK Prompt: p  Response A: a  Response B: b
                 QUESTION <template's close and assistant opening>

There the prompt keeps its start and each response its end (its latest turns, the
latest losing its start when it alone is too long), since a task is stated first and a
response concludes last.

Every token also carries a segment id (prompt, first response, second response) so
that a network can pool each part separately.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from arenajudge.data.schema import Battles, Turns
from arenajudge.errors import ConfigError

PROMPT_MARKER = "Prompt:"
RESPONSE_MARKER = "\nResponse:"
RESPONSE_A_MARKER = "\nResponse A:"
RESPONSE_B_MARKER = "\nResponse B:"
TURN_SEPARATOR = "\n\n"
CHAT_TASK = "Two assistants answered the same prompt.\n\n"
CHAT_QUESTION = "\n\nWhich response is better? Answer with one word: A, B or tie."
_CONTENT = "ARENAJUDGE-CONTENT-3f9c"
"""A placeholder rendered through the chat template to find what it puts around a user
turn."""
SIDES = ("prompt", "response_a", "response_b")
PROMPT, RESPONSE_A, RESPONSE_B = 0, 1, 2
"""Segment ids of the tokens of a sequence (markers and special tokens count as prompt)."""
Sequence = tuple[list[int], list[int]]
"""One model input sequence: token ids and their segment ids, of equal length."""
MIN_SIDE_TOKENS = 4
"""Fewer budget tokens than this per side leaves the model nothing to read."""


@dataclass(frozen=True)
class PackedBattle:
    """The kept token ids of each side of one battle, before markers and special tokens."""

    prompt: list[int]
    response_a: list[int]
    response_b: list[int]


@dataclass
class TruncationStats:
    """How much packing cut, counted over battles (each side once)."""

    rows: int = 0
    truncated_rows: int = 0
    prompt_truncated: int = 0
    response_a_truncated: int = 0
    response_b_truncated: int = 0
    dropped_turns: int = 0
    tokens_total: int = 0
    tokens_kept: int = 0

    def to_dict(self) -> dict[str, Any]:
        stats: dict[str, Any] = asdict(self)
        stats["kept_token_share"] = (
            self.tokens_kept / self.tokens_total if self.tokens_total else 1.0
        )
        return stats


def keep_latest(
    turns: list[list[int]], budget: int, separator: list[int], cut_latest_at: str = "head"
) -> tuple[list[int], int]:
    """Concatenate the latest turns that fit in ``budget`` tokens.

    Returns the ids (turns in their order, joined by ``separator``) and the number of
    turns dropped entirely. The latest turn keeps its head when it alone is too long
    (a response's opening says most; ``cut_latest_at="tail"`` keeps its end instead);
    an older turn that only partly fits keeps its tail, the part next to the kept
    conversation.
    """
    kept: list[list[int]] = []
    used = 0
    for turn in reversed(turns):
        joint = len(separator) if kept else 0
        if used + joint + len(turn) <= budget:
            kept.append(turn)
            used += joint + len(turn)
            continue
        room = budget - used - joint
        if room > 0:
            kept.append(turn[-room:] if kept or cut_latest_at == "tail" else turn[:room])
        break
    return _joined(list(reversed(kept)), separator), len(turns) - len(kept)


def keep_earliest(
    turns: list[list[int]], budget: int, separator: list[int]
) -> tuple[list[int], int]:
    """Concatenate the first turns that fit in ``budget`` tokens, the first one that
    only partly fits cut to its head; the ids and the number of turns dropped."""
    kept: list[list[int]] = []
    used = 0
    for turn in turns:
        joint = len(separator) if kept else 0
        room = budget - used - joint
        if room <= 0:
            break
        kept.append(turn[:room])
        used += joint + len(kept[-1])
    return _joined(kept, separator), len(turns) - len(kept)


def _joined(turns: list[list[int]], separator: list[int]) -> list[int]:
    ids: list[int] = []
    for position, turn in enumerate(turns):
        if position:
            ids += separator
        ids += turn
    return ids


def _share_two(need_a: int, need_b: int, room: int) -> tuple[int, int]:
    """Split ``room`` between two sides wanting ``need_a`` and ``need_b`` tokens.

    Symmetric in A and B (an odd token stays unused rather than favouring one side).
    """
    a = min(need_a, max(room // 2, room - need_b))
    b = min(need_b, max(room // 2, room - need_a))
    return a, b


def split_budget(
    need: tuple[int, int, int], budget: int, prompt_share: float, pair: bool
) -> tuple[int, int, int]:
    """Token allowances (prompt, a, b) for sides needing ``need`` tokens.

    ``pair``: A and B each sit in their own sequence beside the prompt, so each may
    use ``budget - prompt``; otherwise all three share one ``budget``.
    """
    need_p, need_a, need_b = need
    prompt = min(need_p, max(1, int(prompt_share * budget)))
    if pair:
        a, b = min(need_a, budget - prompt), min(need_b, budget - prompt)
        prompt += min(budget - prompt - max(a, b), need_p - prompt)
    else:
        a, b = _share_two(need_a, need_b, budget - prompt)
        prompt += min(budget - prompt - a - b, need_p - prompt)
    return prompt, a, b


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids that open and close a sequence: CLS/SEP for encoders, else BOS/EOS."""
    prefix = (
        tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    )
    suffix = (
        tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    )
    return ([] if prefix is None else [prefix]), ([] if suffix is None else [suffix])


def chat_frame(tokenizer: Any) -> tuple[str, str] | None:
    """The text the tokenizer's chat template puts before and after the content of one
    user turn, the assistant's answer opened (``add_generation_prompt``); None when the
    tokenizer has no template, or one that does not render a lone user turn."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": _CONTENT}], tokenize=False, add_generation_prompt=True
        )
    except Exception:
        return None
    if not isinstance(text, str) or text.count(_CONTENT) != 1:
        return None
    before, after = text.split(_CONTENT)
    return before, after


def pad_token_id(tokenizer: Any) -> int:
    """The id to pad with: the pad token, else EOS (Llama has no pad token), else 0;
    padded positions are masked out, so any id will do."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def separator_ids(tokenizer: Any) -> list[int]:
    """Ids that separate turns: a blank line, or SEP where the tokenizer drops blank
    lines (WordPiece)."""
    ids = encode(tokenizer, [TURN_SEPARATOR])[0]
    if not ids and tokenizer.sep_token_id is not None:
        ids = [tokenizer.sep_token_id]
    return ids


def encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, no special tokens."""
    if not texts:
        return []
    # verbose=False: the "longer than the maximum length" warning does not apply, packing cuts
    return list(tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"])


def encode_turns(tokenizer: Any, sides: list[Turns]) -> list[list[list[int]]]:
    """Token ids of every turn of every side, in one tokenizer call."""
    ids = iter(encode(tokenizer, [turn for turns in sides for turn in turns]))
    return [[next(ids) for _ in turns] for turns in sides]


def joined_length(turns: list[list[int]], separator: list[int]) -> int:
    """Tokens of all ``turns`` joined by ``separator``."""
    return sum(map(len, turns)) + len(separator) * max(len(turns) - 1, 0)


class Packer:
    """Turns battles into token-id sequences for one tokenizer and layout.

    Parameters
    ----------
    tokenizer : transformers tokenizer
        Called as ``tokenizer(texts, add_special_tokens=False)``.
    max_length : int
        Tokens per sequence, special tokens and markers included.
    prompt_share : float
        Budget share granted to the prompt first (see :func:`split_budget`).
    pair : bool
        Two sequences per battle (siamese) instead of one (cross, llm).
    chat : bool
        One sequence framed by the tokenizer's chat template (see the module docstring);
        ConfigError when it has none.
    """

    def __init__(
        self, tokenizer: Any, max_length: int, prompt_share: float, pair: bool, chat: bool = False
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.prompt_share = prompt_share
        self.pair = pair
        self.chat = chat
        if chat:
            frame = chat_frame(tokenizer)
            if frame is None or pair:
                raise ConfigError(
                    "--prompt-format chat needs a decoder LM whose tokenizer has "
                    "a chat template; use --prompt-format plain"
                )
            self.prefix, self.suffix = encode(
                tokenizer, [frame[0] + CHAT_TASK, CHAT_QUESTION + frame[1]]
            )
        else:
            self.prefix, self.suffix = special_tokens(tokenizer)
        (
            self.prompt_marker,
            self.response_marker,
            self.response_a_marker,
            self.response_b_marker,
        ) = encode(
            tokenizer, [PROMPT_MARKER, RESPONSE_MARKER, RESPONSE_A_MARKER, RESPONSE_B_MARKER]
        )
        self.separator = separator_ids(tokenizer)
        overhead = (
            len(self.prefix)
            + len(self.suffix)
            + len(self.prompt_marker)
            + (
                len(self.response_marker)
                if pair
                else len(self.response_a_marker) + len(self.response_b_marker)
            )
        )
        self.budget = max_length - overhead
        if self.budget < 3 * MIN_SIDE_TOKENS:
            raise ConfigError(
                f"--max-length {max_length} leaves {self.budget} tokens for "
                f"the texts after {overhead} marker and special tokens; use "
                f"at least {overhead + 3 * MIN_SIDE_TOKENS}"
            )

    def pack(self, battles: Battles) -> tuple[list[PackedBattle], TruncationStats]:
        """Packed battles (kept ids per side) and what packing cut."""
        sides = [
            encode_turns(self.tokenizer, side)
            for side in (battles.prompt, battles.response_a, battles.response_b)
        ]
        stats = TruncationStats(rows=len(battles))
        return [self._pack_one(turns, stats) for turns in zip(*sides)], stats

    def _pack_one(self, sides: tuple[list[list[int]], ...], stats: TruncationStats) -> PackedBattle:
        prompt, first, second = (joined_length(turns, self.separator) for turns in sides)
        need = (prompt, first, second)
        allowance = split_budget(need, self.budget, self.prompt_share, self.pair)
        kept = []
        for name, turns, wanted, room in zip(SIDES, sides, need, allowance):
            if not self.chat:
                ids, dropped = keep_latest(turns, room, self.separator)
            elif name == "prompt":
                ids, dropped = keep_earliest(turns, room, self.separator)
            else:
                ids, dropped = keep_latest(turns, room, self.separator, cut_latest_at="tail")
            kept.append(ids)
            if len(ids) < wanted:
                setattr(stats, f"{name}_truncated", getattr(stats, f"{name}_truncated") + 1)
            stats.dropped_turns += dropped
            stats.tokens_total += wanted
            stats.tokens_kept += len(ids)
        stats.truncated_rows += any(len(ids) < wanted for ids, wanted in zip(kept, need))
        return PackedBattle(*kept)

    def _chunks(self, battle: PackedBattle, swapped: bool) -> list[list[tuple[list[int], int]]]:
        """Each sequence as (token ids, segment) chunks, in order."""
        a, b = battle.response_a, battle.response_b
        if swapped:
            a, b = b, a
        head = [(self.prefix, PROMPT), (self.prompt_marker, PROMPT), (battle.prompt, PROMPT)]
        if self.pair:
            return [
                head + [(self.response_marker, PROMPT), (side, RESPONSE_A), (self.suffix, PROMPT)]
                for side in (a, b)
            ]
        return [
            head
            + [
                (self.response_a_marker, PROMPT),
                (a, RESPONSE_A),
                (self.response_b_marker, PROMPT),
                (b, RESPONSE_B),
                (self.suffix, PROMPT),
            ]
        ]

    def sequences(self, battle: PackedBattle, swapped: bool = False) -> list[Sequence]:
        """The model input of one battle, A and B exchanged when ``swapped``: two
        sequences (pair) or one, each as (token ids, segment ids). Segments: 0 prompt,
        markers and special tokens; 1 the (first) response; 2 the second response."""
        return [
            (
                [i for ids, _ in chunks for i in ids],
                [segment for ids, segment in chunks for _ in ids],
            )
            for chunks in self._chunks(battle, swapped)
        ]
