"""Negation item data: strict JSONL loading, dataset resolution, MultiNLI conversion, tokenization checks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from headwiki.ablation.items import ENGLISH_PATH, FIELDS, NegationItem, data_hash, load_jsonl, parse_items, resolve_dataset
from headwiki.ablation.multinli import negation_cues, pair_to_item, rows_to_items
from headwiki.ablation.scoring import encode_items
from headwiki.errors import HeadwikiError

GOOD = {"id": "a", "template": "capital", "affirmative": "The capital of France is",
        "negated": "The capital of France is not", "control": "The capital of France is also",
        "target": " Paris", "foil": " Rome"}


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_good_file_loads_and_hash_tracks_content(tmp_path: Path) -> None:
    second = {**GOOD, "id": "b", "target": " Rome", "foil": " Paris"}
    items = load_jsonl(_write(tmp_path, [json.dumps(GOOD), "", json.dumps(second)]))
    assert [i.id for i in items] == ["a", "b"] and items[1].prompt("negated") == GOOD["negated"]
    assert data_hash(items) == data_hash(list(items))
    assert data_hash(items) != data_hash(items[:1]) != data_hash([items[1], items[0]])


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"id": "x", "template": ', "line 2: invalid JSON"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "foil"} | {"id": "x"}), "line 2: missing field 'foil'"),
        (json.dumps(GOOD | {"id": "x", "target": 3}), "line 2: field 'target' must be a non-empty string"),
        (json.dumps(GOOD | {"id": "x", "target": "Paris"}), "line 2: target 'Paris' must start with a space"),
        (json.dumps(GOOD | {"id": "x", "foil": " Paris"}), "line 2: target and foil are both"),
        (json.dumps(GOOD), "line 2: duplicate id 'a' (first on line 1)"),
        ("[1, 2]", "line 2: expected a JSON object"),
    ],
)
def test_bad_line_reports_its_number(tmp_path: Path, line: str, expected: str) -> None:
    with pytest.raises(HeadwikiError) as err:
        load_jsonl(_write(tmp_path, [json.dumps(GOOD), line]))
    message = str(err.value)
    assert expected in message and "\n" not in message


def test_empty_and_missing_files_fail_with_the_fix(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(HeadwikiError, match="contains no items"):
        load_jsonl(empty)
    with pytest.raises(HeadwikiError, match="unknown dataset 'englsh'"):
        resolve_dataset("englsh")
    with pytest.raises(HeadwikiError, match="does not exist"):
        load_jsonl(tmp_path / "nope.jsonl")


def test_user_file_is_named_after_the_file_and_subsets_are_seeded(tmp_path: Path) -> None:
    lines = [json.dumps(GOOD | {"id": f"i{k}"}) for k in range(10)]
    ds = resolve_dataset(str(_write(tmp_path, lines)), seed=1, max_items=4)
    again = resolve_dataset(str(tmp_path / "items.jsonl"), seed=1, max_items=4)
    assert ds.name == "file:items.jsonl" and len(ds.items) == 4 and ds.hash == again.hash


def _counterbalanced(items: list[NegationItem]) -> list[str]:
    """Candidates that are never a target or never a foil (should be none)."""
    as_target = Counter(i.target for i in items)
    as_foil = Counter(i.foil for i in items)
    return sorted(c for c in set(as_target) | set(as_foil) if not as_target[c] or not as_foil[c])


def test_toy_items_are_valid_counterbalanced_minimal_pairs() -> None:
    ds = resolve_dataset("toy", seed=0)
    assert len(ds.items) >= 400
    assert _counterbalanced(ds.items) == []
    for item in ds.items[:50]:
        assert item.negated.split(" ")[:-2] == item.control.split(" ")[:-2]  # same frame, negation word swapped
        assert len(item.negated.split()) == len(item.control.split())


def test_toy_items_come_from_the_world_the_toy_model_was_trained_on() -> None:
    """The ablation seed draws subsets; the items must still be the committed model's never-negated entities."""
    from headwiki.toy import world_seed
    from headwiki.toy.world import make_world

    world = make_world(world_seed())
    for seed in (0, 5):
        ds = resolve_dataset("toy", seed=seed)
        assert {item.negated.split()[1] for item in ds.items} == set(world.heldout_entities)


def test_english_dataset_is_large_varied_and_counterbalanced() -> None:
    assert ENGLISH_PATH.is_file(), f"{ENGLISH_PATH} is missing: the english item file has not landed yet"
    ds = resolve_dataset("english")
    assert len(ds.items) >= 400
    assert len({i.template for i in ds.items}) >= 10
    assert _counterbalanced(ds.items) == []


def test_multinli_rows_become_honest_true_false_pairs() -> None:
    rows = [
        {"premise": "The shop was closed all day.", "hypothesis": "The shop was not open.", "label": 0, "genre": "fiction"},
        {"premise": "He ran to the station.", "hypothesis": "He did not run.", "label": 2, "genre": "travel"},
        {"premise": "x", "hypothesis": "It is not only red.", "label": 0, "genre": "g"},
        {"premise": "x", "hypothesis": "Nobody did not come.", "label": 0, "genre": "g"},
        {"premise": "x", "hypothesis": "It was not blue.", "label": 1, "genre": "g"},
        {"premise": "x", "hypothesis": "It wasn't blue.", "label": 0, "genre": "g"},
    ]
    items = rows_to_items(rows)
    assert [i.id for i in items] == ["mnli-0", "mnli-1"]
    entailed, contradicted = items
    assert entailed.foil == " True" and entailed.target == " False"  # gold label belongs to the negated form
    assert contradicted.foil == " False" and contradicted.target == " True"
    assert "The shop was open." in entailed.affirmative and "The shop was also open." in entailed.control
    assert entailed.negated.endswith("Answer:") and "not" not in negation_cues(entailed.affirmative)
    assert pair_to_item(rows[5], 5) is None


def test_multinli_offline_is_one_clean_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # empty cache: nothing to fall back on
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    with pytest.raises(HeadwikiError) as err:
        resolve_dataset("multinli")
    message = str(err.value)
    assert "nyu-mll/multi_nli" in message and "--dataset" in message and "\n" not in message


def test_tokenizer_that_merges_across_the_boundary_is_reported() -> None:
    from tokenizers import Tokenizer, models, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))  # no pre-tokenizer: merges may cross spaces
    tok.train_from_iterator(["the cat is big"] * 50, trainers.BpeTrainer(vocab_size=60, special_tokens=["<unk>"]))
    encode = lambda texts: [tok.encode(t).ids for t in texts]  # noqa: E731
    item = NegationItem("m1", "t", "the cat is", "the cat is not", "the cat is also", " big", " cat")
    assert encode(["the cat is big"])[0][: len(encode(["the cat is"])[0])] != encode(["the cat is"])[0]
    with pytest.raises(HeadwikiError, match=r"item 'm1' \(affirmative\): the tokenizer merges"):
        encode_items([item], encode, n_ctx=64)


def test_fields_are_the_documented_schema() -> None:
    assert FIELDS == ("id", "template", "affirmative", "negated", "control", "target", "foil")
    assert len(parse_items([json.dumps(GOOD)], "x")) == 1
