"""Weight-based roles (copying, copy suppression, successor): the d_head eigenvalue trick against the full
d_vocab x d_vocab circuit (spd's formula), GQA, planted heads found at rank 1, no label on a random-init model,
and the detect pass writing the columns, roles and head_ov_profile."""

from __future__ import annotations

import math

import numpy as np
from pathlib import Path

import pytest
import torch

from headwiki.ordinals import DAYS, LETTERS, MONTHS, NUMBER_WORDS, NUMBERS, ordinal_runs
from headwiki.ov_circuit import copying_scores, eigen_positivity, normalize_rows, unembed

ORDINAL_WORDS = [*NUMBERS, *NUMBER_WORDS, *DAYS, *MONTHS, *LETTERS]
N_LAYERS, N_HEADS, N_KV, D_MODEL = 2, 4, 2, 64
D_HEAD = D_MODEL // N_HEADS
COPY, SUPPRESS, SUCCESSOR = (0, 0), (0, 1), (1, 2)  # planted heads (0, 0) and (0, 1) share KV head 0


def spd_copying_score(W_E: torch.Tensor, W_V: torch.Tensor, W_O: torch.Tensor, W_U: torch.Tensor) -> float:
    """spd's / Elhage et al.'s definition taken literally: eigenvalues of the full d_vocab x d_vocab OV circuit
    W_U^T W_O^T W_V^T W_E^T (column convention), positivity sum(lambda) / sum(|lambda|)."""
    full = (W_E @ W_V @ W_O @ W_U).T
    lam = torch.linalg.eigvals(full)
    return float(lam.sum().real / lam.abs().sum())


def test_eigen_trick_matches_full_circuit() -> None:
    gen = torch.Generator().manual_seed(0)
    V, d, dh = 50, 12, 4
    W_E, W_U = torch.randn(V, d, generator=gen, dtype=torch.float64), torch.randn(d, V, generator=gen, dtype=torch.float64)
    W_V = torch.randn(1, 3, d, dh, generator=gen, dtype=torch.float64)
    W_O = torch.randn(1, 3, dh, d, generator=gen, dtype=torch.float64)
    ours = copying_scores(W_V, W_O, W_U @ W_E)
    for h in range(3):
        assert ours[0, h].item() == pytest.approx(spd_copying_score(W_E, W_V[0, h], W_O[0, h], W_U), abs=1e-9)
    # the identity circuit copies (+1), its negation suppresses (-1); a rotation by 90 degrees does neither
    assert eigen_positivity(torch.linalg.eigvals(torch.eye(4, dtype=torch.float64))).item() == pytest.approx(1.0)
    assert eigen_positivity(torch.linalg.eigvals(-torch.eye(4, dtype=torch.float64))).item() == pytest.approx(-1.0)
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    assert eigen_positivity(torch.linalg.eigvals(rot)).item() == pytest.approx(0.0, abs=1e-12)


def test_ordinal_runs_need_single_tokens() -> None:
    vocab = {w: i for i, w in enumerate(["Monday", "Tuesday", "Wednesday", "Friday", "Saturday", "Sunday", "1", "2"])}
    runs = ordinal_runs(lambda s: [vocab[s.strip()]] if s.strip() in vocab else [0, 0])
    assert [(r.name, r.words) for r in runs] == [("days", ("Monday", "Tuesday", "Wednesday")),
                                                  ("days", ("Friday", "Saturday", "Sunday"))]


def _write_model(root: Path, seed: int, plant: bool) -> Path:
    """A random-init GQA Llama with a word tokenizer holding the ordinal words; with `plant`, head COPY's OV circuit
    is a projection (copies), SUPPRESS's its negation, and SUCCESSOR's rotates an 'ordinal position' plane so each
    ordinal maps to its successor."""
    from transformers import LlamaForCausalLM

    from headwiki.random_models import build_word_tokenizer, word_vocab, write_random_model

    words = word_vocab(4) + ORDINAL_WORDS + [","]
    words += [f"w{i}" for i in range(128 - len(words))]
    out = write_random_model(root, arch="llama", n_layers=N_LAYERS, n_heads=N_HEADS, n_kv_heads=N_KV, d_model=D_MODEL,
                             vocab_size=len(words), seed=seed)
    build_word_tokenizer(words).save_pretrained(out)
    if not plant:
        return out
    model = LlamaForCausalLM.from_pretrained(out)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        attn0, attn1 = model.model.layers[0].self_attn, model.model.layers[1].self_attn
        Q, _ = torch.linalg.qr(torch.randn(D_MODEL, D_HEAD, generator=gen))  # orthonormal [d_model, d_head]
        attn0.v_proj.weight[0:D_HEAD] = Q.T  # KV head 0 (read by query heads 0 and 1): W_V = Q
        attn0.o_proj.weight[:, 0:D_HEAD] = 5 * Q  # head 0: W_O = 5 Q^T  -> W_V W_O = 5 Q Q^T (copies)
        attn0.o_proj.weight[:, D_HEAD:2 * D_HEAD] = -5 * Q  # head 1: the negation (suppresses)
        # successor: every ordinal of a sequence at position p gets 3 (cos p theta, sin p theta) in dims 0-1
        # (every token row random with std 1 so the plane does not dominate the embedding; theta = 7 * 2 pi / 27: unique
        # successor for runs of <= 26 members, and a rotation far from the identity, so the head is not a copying head)
        E = model.model.embed_tokens.weight
        E.copy_(torch.randn(E.shape, generator=gen))
        E[:, :2] = 0.0
        theta = 7 * 2 * math.pi / 27
        for seq in (NUMBERS, NUMBER_WORDS, DAYS, MONTHS, LETTERS):
            for p, w in enumerate(seq):
                i = words.index(w)
                E[i, 0], E[i, 1] = 3 * math.cos(p * theta), 3 * math.sin(p * theta)
        rot = torch.tensor([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])  # row vec @ rot
        kv = SUCCESSOR[1] // (N_HEADS // N_KV)
        v = torch.zeros(D_HEAD, D_MODEL)
        v[range(D_HEAD), range(D_HEAD)] = 1.0  # W_V: read dims 0..d_head-1 (full rank: the KV-group mate stays generic)
        attn1.v_proj.weight[kv * D_HEAD:(kv + 1) * D_HEAD] = v
        o = torch.zeros(D_MODEL, D_HEAD)
        o[:2, :2] = 5 * rot.T  # W_O = 5 rot on dims 0-1
        attn1.o_proj.weight[:, SUCCESSOR[1] * D_HEAD:(SUCCESSOR[1] + 1) * D_HEAD] = o
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    from headwiki.models import load_model

    return load_model(str(_write_model(tmp_path_factory.mktemp("planted"), seed=3, plant=True)))


def _scores(loaded, seed: int = 0) -> dict[str, torch.Tensor]:
    from headwiki.detectors import weights as W
    from headwiki.detectors.data import ordinary_token_ids

    ctx = W.weight_context(loaded.bridge.tokenizer, ordinary_token_ids(loaded.bridge.tokenizer, loaded.info.d_vocab), seed)
    return W.weight_scores(W.ov_weights(loaded.bridge), ctx)


def _top(grid: torch.Tensor) -> tuple[int, int]:
    i = int(torch.nan_to_num(grid, nan=-math.inf).reshape(-1).argmax())
    return divmod(i, grid.shape[1])


@pytest.mark.slow
def test_planted_heads_rank_first(planted) -> None:
    from headwiki.detectors.weights import ov_weights

    cols = _scores(planted)
    assert _top(cols["copying"]) == COPY and cols["copying"][COPY].item() == pytest.approx(1.0, abs=1e-6)
    assert _top(cols["copy_suppression"]) == SUPPRESS and cols["copy_suppression"][SUPPRESS].item() == pytest.approx(1.0, abs=1e-6)
    assert _top(cols["successor"]) == SUCCESSOR and cols["successor"][SUCCESSOR].item() == 1.0
    assert cols["successor_random"][SUCCESSOR].item() < 0.5  # random-token runs have no order to follow
    # GQA: each query head uses its KV head's W_V (head 1 shares KV head 0 with head 0), and the d_head trick
    # equals spd's full-vocabulary formula on every head
    w = ov_weights(planted.bridge)
    assert torch.equal(w.W_V[0, 0], w.W_V[0, 1]) and not torch.equal(w.W_V[0, 0], w.W_V[0, 2])
    for layer in range(N_LAYERS):
        for head in range(N_HEADS):
            ref = spd_copying_score(w.E, w.W_V[layer, head], w.W_O[layer, head], w.U)
            assert cols["copying"][layer, head].item() == pytest.approx(ref, abs=1e-5)  # G summed in float32


def test_gain_folding_and_normalization() -> None:
    x = torch.tensor([[3.0, 4.0], [1.0, -1.0]])
    assert normalize_rows(x, "RMS").pow(2).mean(-1).tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    assert normalize_rows(x, "LN").mean(-1).tolist() == pytest.approx([0.0, 0.0], abs=1e-9)
    U = unembed(torch.ones(2, 3), torch.tensor([2.0, 0.5]), "LN")
    assert U.mean(0).tolist() == pytest.approx([0.0] * 3)


@pytest.mark.slow
def test_detect_pass_labels_planted_not_random(planted, tmp_path: Path) -> None:
    """The pass writes the columns, the roles (planted heads only) and the OV profile; a random-init model of the
    same shapes gets no weight role."""
    from headwiki.db.store import reading
    from headwiki.detectors.run import detect_model
    from headwiki.models import load_model

    db = tmp_path / "p.duckdb"
    detect_model(planted, db, n_seqs=4, seq_len=4, n_boot=50)
    rand = load_model(str(_write_model(tmp_path / "random", seed=5, plant=False)))
    detect_model(rand, db, n_seqs=4, seq_len=4, n_boot=50)
    with reading(db) as con:
        held = con.execute("SELECT model_id, layer, head, list_filter(roles, lambda r: r IN ('copying', 'copy_suppression', "
                           "'successor')) FROM heads ORDER BY model_id, layer, head").fetchall()
        prof = con.execute("SELECT count(*), count(DISTINCT (layer, head)) FROM head_ov_profile WHERE model_id = ?",
                           [planted.info.name]).fetchone()
        top = con.execute("SELECT token FROM head_ov_profile WHERE model_id = ? AND layer = 0 AND head = 1 AND "
                          "direction = 'suppressed' AND rank = 1 ORDER BY input_rank", [planted.info.name]).fetchall()
        inputs = con.execute("SELECT DISTINCT input_rank, input_token FROM head_ov_profile WHERE model_id = ? "
                             "ORDER BY input_rank", [planted.info.name]).fetchall()
        role_rows = con.execute("SELECT role, threshold, citation, control FROM roles WHERE model_id = ? AND role IN "
                                "('copying', 'copy_suppression', 'successor') ORDER BY role", [planted.info.name]).fetchall()
    labelled = {(m, L, H): set(r) for m, L, H, r in held if r}
    assert labelled == {(planted.info.name, *COPY): {"copying"}, (planted.info.name, *SUPPRESS): {"copy_suppression"},
                        (planted.info.name, *SUCCESSOR): {"successor"}}
    assert prof == (N_LAYERS * N_HEADS * 4 * 2 * 5, N_LAYERS * N_HEADS)
    # the suppressing head writes down the input token itself most, for at least some inputs
    assert sum(t == i for (t,), (_, i) in zip(top, inputs)) >= 2
    assert [r[0] for r in role_rows] == ["copy_suppression", "copying", "successor"]
    assert all(r[1] == 0.5 and r[2] and r[3] for r in role_rows)


def test_ordinal_prompts_and_ablation_check(planted) -> None:
    """Next-ordinal prompts ("Monday , Tuesday , Wednesday ," -> "Thursday") and the ablation check's rows: the clean
    accuracy is the model's own top-1, and ablating a group changes the logits it is computed from."""
    from headwiki.ablation.ordinal import correct, ordinal_check, ordinal_prompts

    tok = planted.bridge.tokenizer
    p = ordinal_prompts(tok, planted.start.id)
    days = [i for i, r in enumerate(p.runs) if r == "days"]
    assert tok.decode(p.tokens[days[0], 1:]).split() == ["Monday", ",", "Tuesday", ",", "Wednesday", ","]
    assert tok.decode([int(p.targets[days[0]])]) == "Thursday"
    assert len(p.targets) == sum(len(s) - 3 for s in (NUMBERS, NUMBER_WORDS, DAYS, MONTHS, LETTERS))
    with torch.no_grad():
        direct = planted.bridge(p.tokens)[:, -1].argmax(-1) == p.targets
    assert torch.equal(correct(planted.bridge, p), direct)
    rows = ordinal_check(planted.bridge, p, {"planted": [SUCCESSOR]}, N_LAYERS, N_HEADS, kind="zero", n_random=3)
    assert rows[0]["k"] == 1 and rows[0]["clean_acc"] == pytest.approx(float(direct.float().mean()))
    assert 0 < rows[0]["p_rank"] <= 1 and rows[0]["n_prompts"] == len(p.targets)


@pytest.mark.slow
def test_next_ordinal_signature_rows_on_a_model_that_needs_its_successor_head(tmp_path: Path) -> None:
    """The validation pass's next-ordinal signature (headwiki.ablation.ordinal.ordinal_signature_rows) on the planted model
    made to do the task through its successor head alone: END of each prompt attends to the last member (pattern hook),
    and the head's W_O is scaled x10 so its successor code outweighs the random rest of the residual. Ablating the head
    removes its whole accuracy; random layer-1 heads remove less; every number equals a recomputation with correct()."""
    from headwiki.ablation.ordinal import correct, head_means, ordinal_prompts, ordinal_signature_rows
    from headwiki.ablation.validation import _effect_row, matched_random_sets
    from headwiki.causal_spec import NEXT_ORDINAL
    from headwiki.hooks import pattern_hook
    from headwiki.models import load_model

    m = load_model(str(_write_model(tmp_path / "m", seed=3, plant=True)))
    L, H = SUCCESSOR
    with torch.no_grad():
        m.bridge.original_model.model.layers[L].self_attn.o_proj.weight[:, H * D_HEAD:(H + 1) * D_HEAD] *= 10.0

    def last_member(pattern: torch.Tensor, hook: object) -> torch.Tensor:
        pattern = pattern.clone()
        pattern[:, H, -1] = 0.0
        pattern[:, H, -1, -2] = 1.0  # "[BOS] m1 , m2 , m3 ,": END (the last comma) attends to m3
        return pattern

    m.bridge.add_hook(pattern_hook(L), last_member, is_permanent=True)
    try:
        p = ordinal_prompts(m.bridge.tokenizer, m.start.id)
        clean = correct(m.bridge, p).double()
        randoms = matched_random_sets([SUCCESSOR], {SUCCESSOR}, N_HEADS, 10, np.random.default_rng(0))
        rows, record = ordinal_signature_rows(m, "successor", [("top1", [SUCCESSOR], randoms)], ("zero", "mean"),
                                              _effect_row, {"model_id": "m"}, 200, 200, 0)
        means = head_means(m.bridge, p, N_LAYERS)
        expect = {kind: correct(m.bridge, p, [SUCCESSOR], kind, means).double() for kind in ("zero", "mean")}
        rand_zero = [correct(m.bridge, p, r, "zero").double().mean().item() for r in randoms]
    finally:
        m.bridge.reset_hooks(including_permanent=True)
    assert record["applicable"] and record["clean_accuracy"] == pytest.approx(clean.mean().item())
    assert record["clean_accuracy"] >= 0.2
    assert [(r["group_name"], r["ablation"], r["signature"]) for r in rows] == [("top1", "zero", NEXT_ORDINAL), ("top1", "mean", NEXT_ORDINAL)]
    for r in rows:
        removed = 1.0 - expect[r["ablation"]].sum().item() / clean.sum().item()
        assert r["effect"] == pytest.approx(removed) and r["n_seqs"] == len(p.targets) and r["heads"] == ["L1H2"]
    zero = rows[0]
    assert zero["effect"] == pytest.approx(1.0)  # the head carries every correct answer
    assert zero["random_effects"] == pytest.approx([1.0 - a / clean.mean().item() for a in rand_zero])
    assert zero["random_max"] < zero["effect"] and zero["significant"]
