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
    """A random-init GPT-2 (3 layers x 4 heads, tied embeddings) whose word tokenizer holds every IOI word."""
    from headwiki.random_models import build_word_tokenizer, word_vocab, write_random_model

    path = write_random_model(tmp_path_factory.mktemp("ioi") / "gpt2", arch="gpt2", n_layers=3, n_heads=4, d_model=64,
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


D, DH = 64, 16  # the ioi_gpt2 fixture's d_model and d_head
SI, NM, NEG, BACKUP = (0, 1), (1, 2), (1, 3), (2, 0)  # the planted heads (layer, head)


def _plant_ov(loaded: object, layer: int, head: int, u: torch.Tensor, sign: float) -> None:
    """Give head (layer, head) of the GPT-2 bridge the OV circuit sign * 8 U U^T (W_V = U^T, W_O = sign * 8 U^T; both
    the joint QKV Conv1D and the bridge's split v copy, which it reads)."""
    attn = loaded.bridge.blocks[layer].attn  # type: ignore[attr-defined]
    cols = slice(2 * D + head * DH, 2 * D + (head + 1) * DH)
    rows = slice(head * DH, (head + 1) * DH)
    attn.qkv.original_component.weight[:, cols] = u  # Conv1D [in, out]
    attn.qkv.original_component.bias[cols] = 0.0
    attn.v.original_component.weight[rows, :] = u.T  # Linear [out, in]
    attn.v.original_component.bias[rows] = 0.0
    attn.o.original_component.weight[rows, :] = sign * 8.0 * u.T  # Conv1D [in, out]


def _plant_ioi_family(loaded: object, n_pairs: int) -> None:
    """Plant the four IOI roles in the 3-layer random GPT-2 as mechanisms, with permanent hooks (one per query row of
    END, every replica of the scorer's batched forwards):

    * S-inhibition L0H1: END attends to S2 (its output at END is then S2's value vector);
    * name mover L1H2: copying OV circuit; END attends to IO when L0H1's output at END is S2's value (the S-inhibition
      signal arrived), else half to IO and half to S1 — so ablating L0H1 halves its attention to IO;
    * negative name mover L1H3: END attends to IO, OV circuit -copy;
    * backup name mover L2H0: W_O = 8 U^T and a value set by a hook to each name's code U^T e_name (0 for every other
      token: what its W_V would read from a clean residual); END attends to BOS while L1H2's output at END is IO's
      value (the name mover did its job), else to IO — so it copies IO only when the name mover is ablated.

    A head's output at END is read from its hook_z tensor AFTER the scorer's ablation hook wrote into it (the z tensor is
    kept by reference; the ablation hooks assign in place)."""
    from headwiki.hooks import pattern_hook, z_hook
    from headwiki.ioi import NAMES, make_prompts, single_tokens

    prompts = make_prompts(loaded.bridge.tokenizer, n_pairs, loaded.start.id, 0)  # type: ignore[attr-defined]
    u, _ = torch.linalg.qr(torch.randn(D, DH, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        for (layer, head), sign in ((NM, 1.0), (NEG, -1.0), (BACKUP, 1.0)):
            _plant_ov(loaded, layer, head, u, sign)
        # the names' embeddings (tied to the unembedding) live in span(U): the OV circuit U U^T copies them exactly
        wte = loaded.bridge.original_model.transformer.wte.weight  # type: ignore[attr-defined]
        names = torch.tensor(sorted(single_tokens(loaded.bridge.tokenizer, NAMES).values()))  # type: ignore[attr-defined]
        wte[names] = torch.randn(len(names), DH, generator=torch.Generator().manual_seed(1)) @ u.T
        code = torch.zeros(wte.shape[0], DH)
        code[names] = wte[names] @ u  # [vocab, dh]: a name's code in span(U), 0 elsewhere
    n = prompts.n
    z: dict[int, torch.Tensor] = {}
    v: dict[int, torch.Tensor] = {}

    def rows_of(t: torch.Tensor) -> torch.Tensor:
        return torch.arange(t.shape[0]) % n  # replica r's row i is prompt i

    def keep_z(layer: int) -> object:
        def hook(t: torch.Tensor, hook: object) -> None:
            z[layer] = t  # by reference: the ablation hook registered after this one writes into it
        return hook

    def keep_v(layer: int) -> object:
        def hook(t: torch.Tensor, hook: object) -> None:
            v[layer] = t.detach().clone()  # [b, s, H, dh]
        return hook

    def arrived(layer: int, head: int, src: torch.Tensor) -> torch.Tensor:
        """bool [b]: is the head's output at END (after any ablation) the value vector at position src?"""
        i = rows_of(z[layer])
        b = torch.arange(z[layer].shape[0])
        out, want = z[layer][b, prompts.end[i], head], v[layer][b, src[i], head]
        return (out - want).norm(dim=-1) <= 1e-3 * want.norm(dim=-1)

    def set_rows(p: torch.Tensor, head: int, weights: dict[str, torch.Tensor]) -> None:
        i = rows_of(p)
        b = torch.arange(p.shape[0])
        p[b, head, prompts.end[i]] = 0.0
        for pos, w in weights.items():
            p[b, head, prompts.end[i], getattr(prompts, pos)[i] if pos != "bos" else torch.zeros_like(i)] += w

    def backup_value(t: torch.Tensor, hook: object) -> torch.Tensor:  # [b, s, H, dh]
        t = t.clone()
        t[:, :, BACKUP[1]] = code[prompts.tokens[rows_of(t)]]
        return t

    def layer0(p: torch.Tensor, hook: object) -> torch.Tensor:
        p = p.clone()
        set_rows(p, SI[1], {"s2_pos": torch.ones(p.shape[0])})
        return p

    def layer1(p: torch.Tensor, hook: object) -> torch.Tensor:
        p = p.clone()
        steered = arrived(0, SI[1], prompts.s2_pos).float()
        set_rows(p, NM[1], {"io_pos": 0.5 + 0.5 * steered, "s1_pos": 0.5 - 0.5 * steered})
        set_rows(p, NEG[1], {"io_pos": torch.ones(p.shape[0])})
        return p

    def layer2(p: torch.Tensor, hook: object) -> torch.Tensor:
        p = p.clone()
        done = arrived(1, NM[1], prompts.io_pos).float()
        set_rows(p, BACKUP[1], {"bos": done, "io_pos": 1.0 - done})
        return p

    bridge = loaded.bridge  # type: ignore[attr-defined]
    for layer in range(3):
        bridge.add_hook(z_hook(layer), keep_z(layer), is_permanent=True)
        bridge.add_hook(f"blocks.{layer}.attn.hook_v", keep_v(layer), is_permanent=True)
    for layer, fn in enumerate((layer0, layer1, layer2)):
        bridge.add_hook(pattern_hook(layer), fn, is_permanent=True)
    bridge.add_hook(f"blocks.{BACKUP[0]}.attn.v.hook_out", backup_value, is_permanent=True)


def test_planted_ioi_family_is_found_at_rank_one_and_none_without_it(ioi_gpt2: Path) -> None:
    """Each IOI role planted in one random GPT-2 as a working mechanism (_plant_ioi_family): the scorer (gate lifted: a
    random model does not do IOI) ranks each planted head first on its role's metric and gives the role to it alone;
    the same model without the plants holds no IOI role; the gated scorer calls the random model not applicable."""
    from headwiki.detectors.ioi_roles import ioi_scores
    from headwiki.models import load_model

    loaded = load_model(str(ioi_gpt2), device="cpu")
    gated = ioi_scores(loaded, n_boot=200, n_pairs=16)
    assert gated.record["applicable"] is False and "not do IOI" in gated.record["why"]
    assert gated.frame["ioi_name_mover"].isna().all() and not any(gated.held)
    bare = ioi_scores(loaded, n_boot=200, n_pairs=16, gate=False)
    assert not any(bare.held), bare.held  # no IOI role of any kind without the plants

    _plant_ioi_family(loaded, 16)
    try:
        planted = ioi_scores(loaded, n_boot=200, n_pairs=16, gate=False)
    finally:
        loaded.bridge.reset_hooks(including_permanent=True)  # type: ignore[attr-defined]
    f = planted.frame.assign(held=planted.held).set_index(["layer", "head"])
    assert planted.record["name_movers"] == ["L1H2"]
    assert f.loc[NM, "ioi_attn_io"] == pytest.approx(1.0) and f.loc[SI, "ioi_attn_s2"] == pytest.approx(1.0)
    for head, metric, role in ((NM, "ioi_name_mover", "name_mover"), (NEG, "ioi_negative_name_mover", "negative_name_mover"),
                               (SI, "ioi_s_inhibition", "s_inhibition"), (BACKUP, "ioi_backup_name_mover", "backup_name_mover")):
        assert f[metric].idxmax() == head, (metric, f[metric].idxmax())
        assert [i for i in f.index if role in f.loc[i, "held"]] == [head], role
    assert f.loc[SI, "ioi_s_inhibition"] == pytest.approx(0.5, abs=1e-4)  # attention to IO 1 -> 0.5 when L0H1 is ablated
    assert f.loc[SI, "ioi_s_inhibition_lo"] > 0.4
    assert f.loc[BACKUP, "ioi_backup_name_mover"] > 0.25 and f.loc[BACKUP, "ioi_backup_name_mover_lo"] > 0
    assert f.loc[NM, "ioi_name_mover"] == pytest.approx(f.loc[NEG, "ioi_negative_name_mover"], rel=1e-4)
    assert f["ioi_backup_name_mover"].loc[[(1, h) for h in range(4)]].isna().all()  # the first name mover's layer: NULL


def test_role_overlap_counts_pairs_against_independence() -> None:
    from headwiki.wiki.overlap import role_overlap

    held = [["a", "b"], ["a"], ["b"], [], ["a", "b", "c"], ["c"], [], []]
    o = role_overlap(held, ["c", "a"])
    assert o.roles == ["c", "a", "b"] and o.counts == {"a": 3, "b": 3, "c": 2} and o.n_heads == 8
    ab = o.cells[("a", "b")]
    assert ab.both == 2 and ab.expected == pytest.approx(9 / 8) and ab.ratio == pytest.approx(16 / 9)
    assert o.cells[("b", "a")] == ab and o.cells[("a", "c")].both == 1
