"""Recompute, on the COMMITTED toy weights, every role and accuracy the model card claims.

Nothing is read from the card or metrics.json to decide pass/fail: the probes are rebuilt
from :mod:`headwiki.toy.world` and the scores recomputed. metrics.json is only compared
against the recomputed numbers, to catch a card that drifted from the weights.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

from headwiki.toy import MODEL_DIR
from headwiki.toy.evaluate import (HeadResult, NegationResult, measure_heads, measure_negation,
                                   repeated_random_tokens)
from headwiki.toy.tokenizer import build_tokenizer
from headwiki.toy.train import (AveragedWeights, Layer0OnlyRows, TrainConfig, build_model,
                                make_batch)
from headwiki.toy.world import (CONTROL_WORD, MARKER_WORD, NEGATION_WORD, again_tokens, corpus_text,
                                make_world, marker_index, n_content_words, negation_items, ordinary_vocab,
                                sample_sentence)

#: The committed model's seed (its world: which entities are never negated), chosen by validation.
SEED = 2
#: Claimed roles (layer, head) -> see the model card's per-head table.
PREVIOUS_TOKEN_HEADS: list[tuple[int, int]] = [(0, 5), (0, 1)]
INDUCTION_HEADS: list[tuple[int, int]] = [(1, h) for h in range(8)]
DUPLICATE_TOKEN_HEADS: list[tuple[int, int]] = [(0, 4), (0, 0)]


@pytest.fixture(scope="module")
def model() -> GPT2LMHeadModel:
    torch.set_num_threads(2)
    return GPT2LMHeadModel.from_pretrained(MODEL_DIR, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def heads(model: GPT2LMHeadModel, tok: PreTrainedTokenizerFast) -> HeadResult:
    return measure_heads(model, tok, SEED)


@pytest.fixture(scope="module")
def negation(model: GPT2LMHeadModel, tok: PreTrainedTokenizerFast) -> NegationResult:
    return measure_negation(model, tok, SEED, "heldout")


def test_model_dir_is_small_and_complete() -> None:
    names = {p.name for p in MODEL_DIR.iterdir()}
    for required in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                     "README.md", "metrics.json"):
        assert required in names
    assert sum(p.stat().st_size for p in MODEL_DIR.iterdir()) <= 5 * 1024 * 1024


def test_committed_tokenizer_matches_code(tok: PreTrainedTokenizerFast) -> None:
    assert tok.get_vocab() == build_tokenizer().get_vocab()
    ids = tok("a robin is a bird .")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert len(ids) == 7


def test_in_context_copying(heads: HeadResult) -> None:
    assert heads.second_copy_loss < heads.first_copy_loss - 1.0


def test_induction_heads(heads: HeadResult) -> None:
    assert INDUCTION_HEADS
    for layer, head in INDUCTION_HEADS:
        assert heads.induction[layer][head] >= 0.5


def test_previous_token_heads(heads: HeadResult) -> None:
    assert PREVIOUS_TOKEN_HEADS
    for layer, head in PREVIOUS_TOKEN_HEADS:
        assert heads.previous_token[layer][head] >= 0.5


def test_duplicate_token_heads(heads: HeadResult) -> None:
    """Attention to the earlier copy itself, and not to the position after it (not an induction head)."""
    assert DUPLICATE_TOKEN_HEADS
    for layer, head in DUPLICATE_TOKEN_HEADS:
        assert heads.duplicate[layer][head] >= 0.3
        assert heads.induction[layer][head] < 0.1


def test_negation_heldout_affirmative_and_control(negation: NegationResult) -> None:
    assert negation.n_items >= 200
    assert negation.affirmative >= 0.9
    assert negation.control >= 0.9


def test_negation_heldout_negated(negation: NegationResult) -> None:
    assert negation.negated >= 0.9


def test_negation_trained_entities(model: GPT2LMHeadModel, tok: PreTrainedTokenizerFast) -> None:
    res = measure_negation(model, tok, SEED, "train")
    assert min(res.affirmative, res.negated, res.control) >= 0.9


def test_metrics_json_matches_recomputation(heads: HeadResult, negation: NegationResult,
                                            model: GPT2LMHeadModel, tok: PreTrainedTokenizerFast) -> None:
    m = json.loads((MODEL_DIR / "metrics.json").read_text())
    np.testing.assert_allclose(m["heads"]["induction"], heads.induction, atol=1e-4)
    np.testing.assert_allclose(m["heads"]["duplicate"], heads.duplicate, atol=1e-4)
    np.testing.assert_allclose(m["heads"]["previous_token"], heads.previous_token, atol=1e-4)
    val = measure_negation(model, tok, SEED, "validation")
    for k in ("affirmative", "negated", "control"):
        assert m["negation_heldout"][k] == pytest.approx(getattr(negation, k), abs=1e-6)
        assert m["negation_validation"][k] == pytest.approx(getattr(val, k), abs=1e-6)


def test_committed_model_is_the_validation_choice(model: GPT2LMHeadModel, tok: PreTrainedTokenizerFast) -> None:
    """The card's Selection table: the committed seed has the best validation score of the candidates,
    and its recorded validation score is what these weights give (the test split played no part)."""
    m = json.loads((MODEL_DIR / "metrics.json").read_text())
    rows = m["selection"]
    assert len(rows) >= 2 and len({r["seed"] for r in rows}) == len(rows)
    chosen = [r for r in rows if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["seed"] == m["config"]["seed"] == SEED
    key = lambda r: (r["validation_negated"], -r["validation_logit_diff_negated"])  # noqa: E731
    assert key(chosen[0]) == max(key(r) for r in rows)
    val = measure_negation(model, tok, SEED, "validation")
    assert val.n_items == 216
    assert chosen[0]["validation_negated"] == pytest.approx(val.negated, abs=1e-6)
    assert chosen[0]["test_negated"] == pytest.approx(measure_negation(model, tok, SEED).negated, abs=1e-6)


@pytest.mark.parametrize("split", ["heldout", "validation", "train"])
def test_negation_items_format_and_balance(tok: PreTrainedTokenizerFast, split: str) -> None:
    items = negation_items(seed=SEED, split=split)  # type: ignore[arg-type]
    assert len(items) >= 200 and len({it["id"] for it in items}) == len(items)
    keys = {"id", "template", "affirmative", "negated", "control", "target", "foil"}
    target_n: Counter[str] = Counter()
    foil_n: Counter[str] = Counter()
    for it in items:
        assert set(it) == keys
        assert it["target"] != it["foil"]
        assert it["target"].startswith(" ") and it["foil"].startswith(" ")
        assert it["control"] == it["negated"].replace(f" {NEGATION_WORD} ", f" {CONTROL_WORD} ")
        n_neg = len(tok(it["negated"])["input_ids"])
        assert n_neg == len(tok(it["control"])["input_ids"]) == len(tok(it["affirmative"])["input_ids"]) + 1
        for cand in (it["target"], it["foil"]):
            assert len(tok(it["affirmative"] + cand)["input_ids"]) == n_neg
        target_n[it["target"]] += 1
        foil_n[it["foil"]] += 1
    assert set(target_n) == set(foil_n)
    assert all(target_n[c] == foil_n[c] for c in target_n)


def test_negation_splits_are_disjoint_and_cover_every_negated_fact() -> None:
    world = make_world(SEED)
    splits = ("heldout", "validation", "train")
    pairs = {split: {(it["negated"].split()[1], it["foil"].strip()) for it in negation_items(SEED, split)}
             for split in splits}  # type: ignore[arg-type]
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            assert not (pairs[a] & pairs[b]), (a, b)
    entities = {split: {e for e, _ in pairs[split]} for split in splits}
    assert not (entities["heldout"] & entities["validation"])
    assert not ((entities["heldout"] | entities["validation"]) & entities["train"])
    n_true_negations = len(world.category_of) * (len(set(world.category_of.values())) - 1)
    assert sum(len(p) for p in pairs.values()) == n_true_negations


def test_negated_foils_depend_on_the_entity_category() -> None:
    """What follows "not" depends on the subject's category (contrast weights) and nothing else about the
    subject: every negation entity takes every wrong category, never its own."""
    from headwiki.toy.world import CATEGORIES, contrast_weights

    world = make_world(SEED)
    for e in world.negation_entities:
        assert set(world.trained_foils(e)) == set(CATEGORIES) - {world.category_of[e]}
    rng = np.random.default_rng(7)
    foils: dict[str, Counter[str]] = {c: Counter() for c in CATEGORIES}
    for _ in range(20000):
        words = sample_sentence(rng, world).split()
        if NEGATION_WORD in words:
            foils[world.category_of[words[1]]][words[-2]] += 1
    for cat, counts in foils.items():
        w = contrast_weights(cat, 5.0)
        strong = [c for c, x in zip(CATEGORIES, w) if x == 5.0]
        weak = [c for c, x in zip(CATEGORIES, w) if x == 1.0]
        assert counts[cat] == 0
        assert min(counts[c] for c in strong) > max(counts[c] for c in weak)


def test_heldout_entities_are_never_negated_in_training() -> None:
    world = make_world(SEED)
    held = set(world.heldout_entities) | set(world.validation_entities)
    assert len(held) == len(world.heldout_entities) + len(world.validation_entities)
    rng = np.random.default_rng(123)
    n_neg = 0
    for _ in range(5000):
        words = sample_sentence(rng, world).split()
        cat = world.category_of[words[1]]
        if NEGATION_WORD in words:
            n_neg += 1
            assert words[1] not in held and words[-2] != cat  # true negation
        else:
            assert words[-2] == cat  # true affirmative / control
    assert n_neg > 1000


def test_corpus_text_fits_context_and_is_deterministic(tok: PreTrainedTokenizerFast) -> None:
    passages = corpus_text(50, seed=SEED)
    assert passages == corpus_text(50, seed=SEED)
    assert sum(p.count(" .") for p in passages) == 50
    assert max(len(tok(p)["input_ids"]) for p in passages) <= 64
    vocab = set(ordinary_vocab())
    assert all(w in vocab for p in passages for w in p.split())


def test_again_documents_mark_exactly_the_repeats() -> None:
    doc = again_tokens(np.random.default_rng(5), n_content_words(), 300, marker=marker_index())
    seen: set[int] = set()
    for i, x in enumerate(doc[:-1].tolist()):
        if x == marker_index():
            continue
        assert (doc[i + 1] == marker_index()) == (x in seen)
        seen.add(x)
    assert 0 < (doc == marker_index()).sum() < len(doc) / 2 + 1


def test_averaged_weights_follow_the_ema_formula() -> None:
    """First update copies the weights; later ones move decay-weighted towards the current weights."""
    lin = torch.nn.Linear(2, 1, bias=False)
    avg = AveragedWeights(lin, decay=0.75)
    for value in (2.0, 6.0):
        with torch.no_grad():
            lin.weight.fill_(value)
        avg.update(lin)
    with torch.no_grad():
        lin.weight.fill_(-1.0)
    avg.copy_to(lin)
    assert avg.n_updates == 2
    torch.testing.assert_close(lin.weight, torch.full((1, 2), 0.75 * 2.0 + 0.25 * 6.0))


def test_training_data_is_deterministic_and_flags_gated_again_rows() -> None:
    cfg = TrainConfig()
    world = make_world(SEED)
    steps = (0, cfg.curriculum_steps, cfg.again_gate_from)
    a = [make_batch(np.random.default_rng([SEED, 1]), world, cfg, s) for s in steps]
    b = [make_batch(np.random.default_rng([SEED, 1]), world, cfg, s) for s in steps]
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
    marker = build_tokenizer().get_vocab()[MARKER_WORD]
    has_marker = [(tokens == marker).any(dim=1) for tokens, _ in a]
    assert a[0][0].shape == (cfg.batch_size, cfg.n_ctx)
    assert not has_marker[0].any() and not a[0][1].any()  # curriculum: forward repeats only
    assert has_marker[1].any() and not a[1][1].any()  # "again" documents, through the full model
    assert has_marker[2].any() and torch.equal(a[2][1], has_marker[2])  # gated = "again" rows


def test_layer0_only_rows_skip_the_later_blocks() -> None:
    """Gated rows equal a copy of the model whose later blocks' output projections are zero;
    ungated rows and calls outside the gate are the untouched model."""
    cfg = TrainConfig(n_layer=3, d_model=32, n_head=2)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    cut = build_model(cfg).eval()
    cut.load_state_dict(model.state_dict())
    with torch.no_grad():
        for block in cut.transformer.h[1:]:
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                proj.weight.zero_()
                proj.bias.zero_()
    gate = Layer0OnlyRows(model)
    tokens = torch.randint(4, 60, (3, 9))
    with torch.no_grad():
        full = model(input_ids=tokens).logits
        with gate.rows(torch.tensor([True, False, True])):
            gated = model(input_ids=tokens).logits
        after = model(input_ids=tokens).logits
        short = cut(input_ids=tokens).logits
    torch.testing.assert_close(gated[[0, 2]], short[[0, 2]])
    torch.testing.assert_close(gated[1], full[1])
    torch.testing.assert_close(after, full)
    assert not torch.allclose(full[0], short[0], atol=1e-3)


def test_transformer_lens_bridge_boots_and_matches_hf(model: GPT2LMHeadModel,
                                                     tok: PreTrainedTokenizerFast) -> None:
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(str(MODEL_DIR), device="cpu")
    toks = bridge.to_tokens("a robin is a bird .")
    assert toks[0, 0].item() == tok.bos_token_id and (toks == tok.bos_token_id).sum().item() == 1
    vocab = tok.get_vocab()
    probe = repeated_random_tokens(4, 12, SEED, tok.bos_token_id, vocab[ordinary_vocab()[0]],
                                   n_content_words())
    _, cache = bridge.run_with_cache(probe, names_filter=lambda n: n.endswith("hook_pattern"))
    with torch.no_grad():
        hf = model(input_ids=probe, output_attentions=True).attentions
    n_layers, n_heads = model.config.n_layer, model.config.n_head
    for layer in range(n_layers):
        pat = cache[f"blocks.{layer}.attn.hook_pattern"]
        assert tuple(pat.shape) == (4, n_heads, probe.shape[1], probe.shape[1])
        torch.testing.assert_close(pat, hf[layer], atol=1e-4, rtol=1e-4)
