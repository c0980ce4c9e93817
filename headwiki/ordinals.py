"""Ordinal sequences for successor heads (Gould et al. 2024): numbers, number words, days, months, letters.

Each sequence is kept only where its members are single tokens of the model's tokenizer (tried with a leading
space first, the form they take inside text for BPE tokenizers, then bare); a member that is not one token breaks
the sequence there (only consecutive single-token runs of >= 3 members are kept, so "the successor" is always
defined by the sequence's own order). Torch-free base module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

NUMBERS = tuple(str(i) for i in range(1, 21))
NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")

SEQUENCES: dict[str, tuple[str, ...]] = {
    "numbers": NUMBERS, "number words": NUMBER_WORDS, "days": DAYS, "months": MONTHS, "letters": LETTERS,
}
MIN_RUN = 3


@dataclass(frozen=True)
class OrdinalRun:
    """A run of consecutive members of one ordinal sequence, each a single token."""

    name: str
    words: tuple[str, ...]
    ids: tuple[int, ...]


def single_token(encode: Callable[[str], list[int]], word: str) -> int | None:
    """The token id of `word` (with a leading space first, then bare) when it is one token, else None."""
    for form in (" " + word, word):
        ids = encode(form)
        if len(ids) == 1:
            return int(ids[0])
    return None


def ordinal_runs(encode: Callable[[str], list[int]], sequences: dict[str, Sequence[str]] | None = None) -> list[OrdinalRun]:
    """The single-token runs (>= MIN_RUN members, in order) of every ordinal sequence.

    encode: text -> token ids WITHOUT special tokens (e.g. ``lambda s: tok.encode(s, add_special_tokens=False)``)."""
    out: list[OrdinalRun] = []
    for name, words in (sequences or SEQUENCES).items():
        run_words: list[str] = []
        run_ids: list[int] = []
        for word in [*words, None]:
            tid = single_token(encode, word) if word is not None else None
            if tid is not None and tid not in run_ids:
                run_words.append(word)
                run_ids.append(tid)
                continue
            if len(run_ids) >= MIN_RUN:
                out.append(OrdinalRun(name, tuple(run_words), tuple(run_ids)))
            run_words, run_ids = [], []
            if tid is not None:  # a repeated id starts a new run
                run_words, run_ids = [word], [tid]
    return out


def n_pairs(runs: Sequence[OrdinalRun]) -> int:
    """How many (member, successor) pairs the runs hold."""
    return sum(len(r.ids) - 1 for r in runs)
