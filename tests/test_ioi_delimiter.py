"""Delimiter heads, the IOI family and the role-overlap matrix: exact values on constructed patterns, planted heads in
real random-init models (found at rank 1 and labelled; none labelled without the plant), IOI prompts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from headwiki.detectors.delimiter import delimiter_scores, is_delimiter_text
from headwiki.detectors.registry import BatchMeta

torch.set_num_threads(1)


def _delim_case() -> tuple[torch.Tensor, torch.Tensor, BatchMeta]:
    """Tokens [1, 13] with delimiters (id 3) at positions 4 and 9, and 4 constructed heads [1, 1, 4, 13, 13]:
    0 = on the latest delimiter (BOS before the first), 1 = uniform over keys 1..i, 2 = previous token, 3 = BOS."""
    s = 13
    tokens = torch.tensor([[0, 5, 6, 7, 3, 8, 9, 10, 11, 3, 12, 13, 14]])
    mask = torch.zeros(16, dtype=torch.bool)
    mask[3] = True
    a = torch.zeros(4, s, s)
    for i in range(s):
        seen = [j for j in range(1, i + 1) if tokens[0, j] == 3]
        a[0, i, seen[-1] if seen else 0] = 1.0
        if i == 0:
            a[1:, 0, 0] = 1.0
            continue
        a[1, i, 1:i + 1] = 1.0 / i
        a[2, i, i - 1] = 1.0
        a[3, i, 0] = 1.0
    return a[None, None], tokens, BatchMeta(half_len=6, delimiters=mask)


def test_delimiter_score_is_mass_over_base_rate_and_a_planted_head_ranks_first() -> None:
    pattern, tokens, meta = _delim_case()
    score = delimiter_scores(pattern, tokens, meta)[0, 0]
    rows = range(1, 13)
    base = sum(sum(int(tokens[0, j] == 3) for j in range(1, i + 1)) / i for i in rows) / 12
    mass = sum(1.0 for i in rows if i >= 4) / 12
    assert score[0].item() == pytest.approx(mass / base)
    assert score[1].item() == pytest.approx(1.0)  # uniform attention = the base rate exactly
    assert score[3].item() == 0.0  # all on BOS: nothing on delimiters
    assert int(score.argmax()) == 0 and score[0] > 3.0
    no_delims = BatchMeta(half_len=6, delimiters=torch.zeros(16, dtype=torch.bool))
    assert torch.equal(delimiter_scores(pattern, tokens, no_delims), torch.zeros(1, 1, 4))
    assert is_delimiter_text(".") and is_delimiter_text(" ,") and is_delimiter_text("\n\n") and is_delimiter_text(" --")
    assert not is_delimiter_text(" the") and not is_delimiter_text(" ") and not is_delimiter_text("a.")


def test_no_head_of_a_random_init_model_is_a_delimiter_head(random_llama_dir: Path) -> None:
    """A real forward of a random-init GQA model on random tokens, 15% of the vocabulary called delimiters: every head
    stays near the base rate, far below the role threshold."""
    from headwiki.detectors.delimiter import ROLE
    from headwiki.hooks import capture_patterns
    from headwiki.models import load_model

    loaded = load_model(str(random_llama_dir), device="cpu")
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, 200, (4, 32), generator=gen)
    tokens[:, 0] = loaded.start.id
    mask = torch.zeros(loaded.info.d_vocab, dtype=torch.bool)
    mask[4:200:7] = True
    scores = delimiter_scores(capture_patterns(loaded.bridge, tokens), tokens, BatchMeta(16, mask)).mean(0)
    assert scores.max() < ROLE.threshold / 2 and scores.min() > 0.3


def _ioi_words() -> list[str]:
    from headwiki.ioi import NAMES, OBJECTS, PLACES, TEMPLATES

    words: list[str] = []
    for t in TEMPLATES:
        filled = t.format(A="Mary", B="John", C="John", place="store", object="book")
        words += [w for w in filled.split() if w not in ("Mary", "John", "store", "book")]
    return list(dict.fromkeys([*NAMES, *PLACES, *OBJECTS, *words]))


@pytest.fixture(scope="module")
def ioi_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init GPT-2 (2 layers x 4 heads, tied embeddings) whose word tokenizer holds every IOI word."""
    from headwiki.random_models import build_word_tokenizer, word_vocab, write_random_model

    path = write_random_model(tmp_path_factory.mktemp("ioi") / "gpt2", arch="gpt2", n_layers=2, n_heads=4, d_model=64,
                              vocab_size=256, seed=5)
    base = word_vocab(256)
    words = _ioi_words()
    vocab = base[:4] + words + base[4 + len(words):]
    assert len(vocab) == 256 and len(set(vocab)) == 256
    build_word_tokenizer(vocab).save_pretrained(path)
    return path


def test_ioi_prompts_are_counterbalanced_twins_with_single_token_names(ioi_gpt2: Path) -> None:
    from headwiki.ioi import make_prompts
    from headwiki.models import load_model

    loaded = load_model(str(ioi_gpt2), device="cpu")
    p = make_prompts(loaded.bridge.tokenizer, 12, loaded.start.id, seed=1)
    assert p.n == 24 and p.orders == ["ABBA", "BABA"] * 12
    rows = torch.arange(p.n)
    assert torch.equal(p.tokens[rows, p.io_pos], p.io_tok) and torch.equal(p.tokens[rows, p.s1_pos], p.s_tok)
    assert torch.equal(p.tokens[rows, p.s2_pos], p.s_tok) and bool((p.s1_pos < p.s2_pos).all())
    assert bool((p.other_tok != p.io_tok).all() and (p.other_tok != p.s_tok).all())
    assert torch.equal(p.io_tok[0::2], p.io_tok[1::2]) and torch.equal(p.s_tok[0::2], p.s_tok[1::2])
    assert bool((p.io_pos[0::2] < p.s1_pos[0::2]).all()) and bool((p.io_pos[1::2] > p.s1_pos[1::2]).all())
    assert torch.equal(p.end, torch.tensor([len(loaded.bridge.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in p.texts]))


def test_planted_name_mover_is_found_at_rank_one_and_none_without_it(ioi_gpt2: Path) -> None:
    """Layer-1 head 2 of a random GPT-2 is made a name mover: its pattern puts END's attention on the IO name (hook on
    hook_pattern) and its OV circuit copies (W_V = U, W_O = 8 U^T for an orthonormal U [d_model, d_head]: the value of
    the names' embeddings, tied to the unembedding, are put in span(U), so U U^T copies a name exactly). The scorer (gate lifted: a random model does
    not do IOI) ranks it first on ioi_name_mover and labels it name_mover; it is not a negative name mover; the same
    model without the plant has no name mover. The gated scorer calls the random model not applicable."""
    from headwiki.detectors.ioi_roles import ioi_scores
    from headwiki.hooks import pattern_hook
    from headwiki.ioi import NAMES, make_prompts, single_tokens
    from headwiki.models import load_model

    loaded = load_model(str(ioi_gpt2), device="cpu")
    gated = ioi_scores(loaded, n_boot=200, n_pairs=16)
    assert gated.record["applicable"] is False and "not do IOI" in gated.record["why"]
    assert gated.frame["ioi_name_mover"].isna().all() and not any(gated.held)
    bare = ioi_scores(loaded, n_boot=200, n_pairs=16, gate=False)
    assert not any("name_mover" in h for h in bare.held)

    prompts = make_prompts(loaded.bridge.tokenizer, 16, loaded.start.id, 0)
    attn = loaded.bridge.blocks[1].attn  # the bridge's own modules (it splits GPT-2's joint QKV into q / k / v copies)
    d, dh, h = 64, 16, 2
    u, _ = torch.linalg.qr(torch.randn(d, dh, generator=torch.Generator().manual_seed(0)))
    cols = slice(2 * d + h * dh, 2 * d + (h + 1) * dh)
    with torch.no_grad():
        attn.qkv.original_component.weight[:, cols] = u  # Conv1D [in, out]
        attn.qkv.original_component.bias[cols] = 0.0
        attn.v.original_component.weight[h * dh:(h + 1) * dh, :] = u.T  # Linear [out, in]
        attn.v.original_component.bias[h * dh:(h + 1) * dh] = 0.0
        attn.o.original_component.weight[h * dh:(h + 1) * dh, :] = 8.0 * u.T  # Conv1D [in, out]
        # the names' embeddings (tied to the unembedding) live in span(U): the OV circuit U U^T copies them exactly
        wte = loaded.bridge.original_model.transformer.wte.weight
        names = torch.tensor(sorted(single_tokens(loaded.bridge.tokenizer, NAMES).values()))
        wte[names] = torch.randn(len(names), dh, generator=torch.Generator().manual_seed(1)) @ u.T

    def plant(pattern: torch.Tensor, hook: object) -> torch.Tensor:
        n = prompts.n
        reps = pattern.shape[0] // n
        out = pattern.clone()
        for r in range(reps):
            rows = torch.arange(n) + r * n
            out[rows, h, prompts.end] = 0.0
            out[rows, h, prompts.end, prompts.io_pos] = 1.0
        return out

    loaded.bridge.add_hook(pattern_hook(1), plant, is_permanent=True)  # type: ignore[attr-defined]
    try:
        planted = ioi_scores(loaded, n_boot=200, n_pairs=16, gate=False)
    finally:
        loaded.bridge.reset_hooks(including_permanent=True)  # type: ignore[attr-defined]
    f = planted.frame.assign(held=planted.held).set_index(["layer", "head"])
    assert f["ioi_name_mover"].idxmax() == (1, h)
    assert "name_mover" in f.loc[(1, h), "held"] and "negative_name_mover" not in f.loc[(1, h), "held"]
    assert f.loc[(1, h), "ioi_attn_io"] == pytest.approx(1.0)
    assert [i for i in f.index if "name_mover" in f.loc[i, "held"]] == [(1, h)]


def test_role_overlap_counts_pairs_against_independence() -> None:
    from headwiki.wiki.overlap import role_overlap

    held = [["a", "b"], ["a"], ["b"], [], ["a", "b", "c"], ["c"], [], []]
    o = role_overlap(held, ["c", "a"])
    assert o.roles == ["c", "a", "b"] and o.counts == {"a": 3, "b": 3, "c": 2} and o.n_heads == 8
    ab = o.cells[("a", "b")]
    assert ab.both == 2 and ab.expected == pytest.approx(9 / 8) and ab.ratio == pytest.approx(16 / 9)
    assert o.cells[("b", "a")] == ab and o.cells[("a", "c")].both == 1
