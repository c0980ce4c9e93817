"""Checks on the data files shipped with headwiki: the English passages and the negation minimal pairs."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PASSAGES = REPO / "headwiki/data/english_passages.txt"
NEGATION = REPO / "ablation/data/english.jsonl"

KEYS = {"id", "template", "affirmative", "negated", "control", "target", "foil"}
NEGATION_WORD = re.compile(r" (?:not|never)\b|n't\b")


def _passage_lines() -> list[str]:
    return [line for line in PASSAGES.read_text(encoding="utf-8").splitlines() if not line.startswith("# ")]


def _passages() -> list[str]:
    body = "\n".join(_passage_lines())
    return [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]


@pytest.fixture(scope="module")
def items() -> list[dict]:
    out = []
    for lineno, line in enumerate(NEGATION.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            obj = json.loads(line)
            assert isinstance(obj, dict), f"line {lineno} is not a JSON object"
            out.append(obj)
    return out


# ---------- english_passages.txt ----------


def test_passages_header_is_a_comment() -> None:
    first = PASSAGES.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ")
    assert "MIT" in first


def test_passages_word_count() -> None:
    words = sum(len(line.split()) for line in _passage_lines())
    assert words >= 2000, f"only {words} words"


def test_passages_are_short_paragraphs() -> None:
    passages = _passages()
    assert len(passages) >= 20
    for p in passages:
        assert 60 <= len(p.split()) <= 160, p[:60]
        assert not p.lstrip().startswith("#")


# ---------- ablation/data/english.jsonl ----------


def test_jsonl_keys_and_types(items: list[dict]) -> None:
    for obj in items:
        assert set(obj) == KEYS, obj.get("id")
        for key in KEYS:
            assert isinstance(obj[key], str) and obj[key].strip(), (obj.get("id"), key)


def test_item_count_and_unique_ids(items: list[dict]) -> None:
    assert len(items) >= 400
    ids = [obj["id"] for obj in items]
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert not dupes, dupes


def test_templates(items: list[dict]) -> None:
    counts = Counter(obj["template"] for obj in items)
    assert len(counts) >= 10, counts
    big = [t for t, n in counts.items() if n >= 25]
    assert len(big) >= 10, counts


def test_counterbalanced_per_template(items: list[dict]) -> None:
    targets: dict[str, set[str]] = defaultdict(set)
    foils: dict[str, set[str]] = defaultdict(set)
    for obj in items:
        targets[obj["template"]].add(obj["target"])
        foils[obj["template"]].add(obj["foil"])
    for template in targets:
        assert targets[template] == foils[template], (
            template,
            sorted(targets[template] - foils[template]),
            sorted(foils[template] - targets[template]),
        )


def test_candidates(items: list[dict]) -> None:
    for obj in items:
        assert obj["target"] != obj["foil"], obj["id"]
        for key in ("target", "foil"):
            cand = obj[key]
            assert cand.startswith(" ") and not cand.startswith("  "), (obj["id"], key)
            assert cand.strip() and cand == cand.rstrip(), (obj["id"], key)


def test_negation_and_control_are_minimal_edits(items: list[dict]) -> None:
    for obj in items:
        neg, ctl, aff = obj["negated"], obj["control"], obj["affirmative"]
        found = list(NEGATION_WORD.finditer(neg))
        assert len(found) == 1, (obj["id"], neg)
        m = found[0]
        # the affirmative is the negated prompt without the negation word
        assert neg[: m.start()] + neg[m.end():] == aff, (obj["id"], aff, neg)
        # the control replaces exactly that word with another, same prefix and suffix
        assert ctl.startswith(neg[: m.start()]) and ctl.endswith(neg[m.end():]), (obj["id"], ctl)
        replacement = ctl[m.start(): len(ctl) - (len(neg) - m.end())]
        assert replacement.strip() and len(replacement.split()) == 1, (obj["id"], replacement)
        assert not NEGATION_WORD.search(ctl), (obj["id"], ctl)
        if m.group(0) == " not":
            assert replacement == " also", (obj["id"], replacement)
        for prompt in (aff, neg, ctl):
            assert prompt == prompt.rstrip(), (obj["id"], prompt)
