"""Composition scores (headwiki.composition, detectors/edges.py) and top-activating examples (detectors/examples.py).

The factored formula against dense products and against TransformerLens; the random-matrix baseline calibrated on
fresh random matrices and on random-init models (z ~ N(0, 1)); on the trained toy model the previous-token heads feed
the induction heads by K-composition with large z, read from the real database the wiki tests build.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import torch

from headwiki import composition as comp
from headwiki.kv_group import kv_groups


def _dense_score(x: torch.Tensor, y: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> float:
    left, right = x @ y, p @ q
    return float((left @ right).norm() / (left.norm() * right.norm()))


def test_factored_scores_equal_dense_products_for_each_kind() -> None:
    g = torch.Generator().manual_seed(3)
    L, H, d, h = 3, 2, 12, 4
    w_q, w_k, w_v = (torch.randn(L, H, d, h, generator=g, dtype=torch.float64) for _ in range(3))
    w_o = torch.randn(L, H, h, d, generator=g, dtype=torch.float64)
    dense_right = {"q": lambda l_, h_: w_q[l_, h_] @ w_k[l_, h_].T, "k": lambda l_, h_: w_k[l_, h_] @ w_q[l_, h_].T,
                   "v": lambda l_, h_: w_v[l_, h_] @ w_o[l_, h_]}
    for kind in comp.KINDS:
        scores = comp.all_scores(w_q, w_k, w_v, w_o, kind)
        assert torch.isnan(scores[1, :, 0, :]).all() and torch.isnan(scores[1, :, 1, :]).all(), "only src layer < dst layer"
        for (s, a, t, b) in [(0, 1, 2, 0), (1, 0, 2, 1), (0, 0, 1, 1)]:
            left = w_v[s, a] @ w_o[s, a]
            right = dense_right[kind](t, b)
            want = float((left @ right).norm() / (left.norm() * right.norm()))
            assert scores[s, a, t, b].item() == pytest.approx(want, rel=1e-9), kind
    # Q- and K-composition differ (the bilinear form is not symmetric): the orientation is tested, not assumed
    assert not torch.allclose(comp.all_scores(w_q, w_k, w_v, w_o, "q").nan_to_num(), comp.all_scores(w_q, w_k, w_v, w_o, "k").nan_to_num())


def test_gqa_expansion_follows_the_kv_groups() -> None:
    w = torch.arange(2 * 3 * 1 * 1, dtype=torch.float64).reshape(2, 3, 1, 1)  # 3 KV heads
    out = comp.expand_kv(w, 9)
    groups = kv_groups(2, 9, 3)
    for layer in range(2):
        for head in range(9):
            assert out[layer, head, 0, 0] == w[layer, groups[layer][head], 0, 0]
    assert comp.expand_kv(w, 3) is w


def test_layernorm_folding_scales_and_centres_reading_rows() -> None:
    w = torch.ones(1, 1, 4, 2, dtype=torch.float64)
    scale = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    folded = comp.fold_norm(w, scale, center=False)
    assert folded[0, 0, :, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert comp.fold_norm(w, scale, center=True)[0, 0].sum(dim=0).abs().max() < 1e-12
    assert comp.center_writing(torch.randn(1, 1, 2, 4, dtype=torch.float64)).sum(dim=-1).abs().max() < 1e-12


def test_baseline_gives_z_near_standard_normal_on_fresh_random_matrices() -> None:
    d, h = 64, 16
    base = comp.random_baseline(d, h, n_draws=64, seed=0)
    g = torch.Generator().manual_seed(99)
    x, p = (torch.randn(200, d, h, generator=g, dtype=torch.float64) for _ in range(2))
    y, q = (torch.randn(200, h, d, generator=g, dtype=torch.float64) for _ in range(2))
    z = comp.z_scores(torch.diagonal(comp.pair_scores(x, y, p, q)), base)  # 200 independent random pairs
    assert abs(z.mean().item()) < 0.35 and 0.7 < z.std().item() < 1.35, (z.mean(), z.std())


def test_random_init_models_show_no_large_z(random_gpt2_dir: Path, random_llama_dir: Path) -> None:
    """The control: random-init weights (GPT-2 LayerNorm; Llama RMSNorm + GQA) compose at chance, |z| < 5 everywhere
    (measured max |z| 3.1 over 3 x 96 pairs); the trained toy's prev-token -> induction edges reach z 28-36."""
    from headwiki.detectors.edges import edge_frame
    from headwiki.models import load_model

    for d in (random_gpt2_dir, random_llama_dir):
        frame = edge_frame(load_model(str(d), device="cpu").bridge, d.name)
        assert len(frame) == 3 * 1 * 4 * 4  # 2 layers x 4 heads: one layer pair, 16 head pairs, 3 kinds
        assert frame["z"].abs().max() < 5.0, frame.sort_values("z").tail(3)


@pytest.mark.slow
def test_scores_agree_with_transformer_lens_on_the_toy_model() -> None:
    from headwiki.models import load_model

    bridge = load_model("toy", device="cpu").bridge
    w_q, w_k, w_v, w_o = (t.detach().double() for t in (bridge.W_Q, bridge.W_K, bridge.W_V, bridge.W_O))
    for kind in comp.KINDS:
        mine = comp.all_scores(w_q, w_k, w_v, w_o, kind)[0, :, 1, :]
        theirs = bridge.all_composition_scores(kind.upper()).scores.detach().double()[0, :, 1, :]
        assert torch.allclose(mine, theirs, atol=1e-5), kind


@pytest.fixture(scope="module")
def real_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_wiki_render import build_real_db  # the session's shared real database (toy + stories260k)

    return build_real_db(tmp_path_factory.getbasetemp() / "wiki-real")


def _heads_with(con: duckdb.DuckDBPyConnection, role: str) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in con.execute(
        "SELECT layer, head FROM heads WHERE model_id = 'toy' AND list_contains(roles, ?)", [role]).fetchall()}


def test_toy_previous_token_heads_feed_the_induction_heads_by_k_composition(real_db: Path) -> None:
    with duckdb.connect(str(real_db), read_only=True) as con:
        prev, ind = _heads_with(con, "previous_token"), _heads_with(con, "induction")
        assert prev and ind
        edges = con.execute("SELECT kind, src_layer, src_head, dst_layer, dst_head, z FROM head_edges "
                            "WHERE model_id = 'toy' ORDER BY z DESC").fetchall()
    assert len(edges) == 3 * 8 * 8
    top = edges[: len(prev) * len(ind)]  # as many edges as prev-token x induction pairs
    circuit = [e for e in top if e[0] == "k" and (e[1], e[2]) in prev and (e[3], e[4]) in ind]
    assert len(circuit) >= 0.9 * len(top), top[:5]
    assert min(e[5] for e in circuit) > 20, "the prev-token -> induction K-composition is far above random matrices"


def test_top_examples_show_the_previous_token_heads_at_work(real_db: Path) -> None:
    """Top-activating strips (by the non-BOS output norm): a previous-token head's query attends the token just before
    it. (The toy's induction heads, on its non-repeating corpus, attend the sentence's subject noun: no copy to find.)"""
    with duckdb.connect(str(real_db), read_only=True) as con:
        prev = _heads_with(con, "previous_token")
        rows = con.execute("SELECT layer, head, rank, tokens, attention, query, top_key, value FROM head_top_examples "
                           "WHERE model_id = 'toy' ORDER BY layer, head, rank").fetchall()
    assert len(rows) == 16 * 4
    for layer, head, rank, tokens, att, query, top_key, value in rows:
        assert query == len(tokens) - 1 and len(att) == len(tokens) and sum(att) <= 1.0 + 1e-3 and value > 0
        if (layer, head) in prev:
            assert top_key == query - 1, (layer, head, rank, tokens)


def test_output_norm_leaves_the_bos_term_out() -> None:
    """A query that reads only BOS writes nothing from non-BOS tokens, however large BOS's value (z_0 = v_BOS)."""
    from headwiki.detectors.examples import output_norms, top_positions

    z = torch.zeros(1, 3, 1, 2)
    z[0, 0, 0] = torch.tensor([100.0, 0.0])  # position 0: BOS's value
    z[0, 1, 0] = torch.tensor([100.0, 0.0])  # position 1 attends BOS only
    z[0, 2, 0] = torch.tensor([0.0, 1.0])  # position 2 attends token 1
    att0 = torch.tensor([[[1.0, 1.0, 0.0]]])  # [b, H, s]: attention of each query to position 0
    w_o = torch.eye(2)[None]
    plain, nobos = output_norms(z, w_o)[0, :, 0], output_norms(z, w_o, att0)[0, :, 0]
    assert plain[1] == 100.0 and nobos[1] == 0.0 and nobos[2] == 1.0
    _, pos = top_positions(nobos[None], 1)
    assert pos.tolist() == [2]


def test_strips_always_hold_the_query_and_the_most_attended_key() -> None:
    from headwiki.detectors.examples import MAX_STRIP_TOKENS, STRIP_TOKENS, strip_positions

    assert strip_positions(5, 4) == [0, 1, 2, 3, 4, 5]
    assert strip_positions(30, 29) == list(range(30 - STRIP_TOKENS + 1, 31))
    assert strip_positions(30, 10) == list(range(10, 31))  # within MAX_STRIP_TOKENS: one run
    far = strip_positions(60, 3)
    assert far[:4] == [1, 2, 3, 4] and None in far and far[-1] == 60 and 3 in far
    assert len(far) <= MAX_STRIP_TOKENS
