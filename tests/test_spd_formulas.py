"""goodfire-ai/spd's formulas beside headwiki's: the attention successor score (detectors/successor_attn.py) and the
delimiter ratio (detectors/delimiter_spd.py). Exact values on constructed patterns, and a planted successor head in a
real random-init model found at rank 1 (none above spd's 0.05 without the plant)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from headwiki.detectors.registry import BatchMeta
from test_ioi_delimiter import _delim_case

torch.set_num_threads(1)


def test_predecessor_attention_is_the_mean_over_valid_pairs() -> None:
    from headwiki.detectors.successor_attn import predecessor_attention

    p = torch.zeros(2, 1, 2, 6, 6)
    p[0, 0, 0, 3, 1], p[0, 0, 0, 5, 3] = 0.5, 0.25  # prompt 0, head 0: pairs (3,1), (5,3)
    p[0, 0, 1, 3, 1] = 1.0
    p[1, 0, 0, 3, 1], p[1, 0, 0, 5, 3] = 0.8, 0.9  # prompt 1 has one valid pair: (5,3) is padding
    dst = torch.tensor([[3, 5], [3, 5]])
    src = dst - 2
    valid = torch.tensor([[True, True], [True, False]])
    out = predecessor_attention(p, dst, src, valid)
    assert out.shape == (2, 1, 2)
    assert torch.allclose(out[:, 0], torch.tensor([[0.375, 0.5], [0.8, 0.0]]))
    assert predecessor_attention(p, dst, src, torch.zeros(2, 2, dtype=torch.bool)).abs().sum() == 0


@pytest.fixture(scope="module")
def ordinal_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init Llama (2 layers x 4 heads, GQA) whose word tokenizer holds number words, days, months, the
    control words and ','."""
    from headwiki.detectors.successor_attn import CONTROL_WORDS
    from headwiki.ordinals import DAYS, MONTHS, NUMBER_WORDS
    from headwiki.random_models import build_word_tokenizer, word_vocab, write_random_model

    path = write_random_model(tmp_path_factory.mktemp("succ") / "llama", arch="llama", n_layers=2, n_heads=4,
                              n_kv_heads=2, d_model=64, vocab_size=256, seed=3)
    base = word_vocab(256)
    words = [*NUMBER_WORDS, *DAYS, *MONTHS, *CONTROL_WORDS, ","]
    vocab = base[:4] + words + base[4 + len(words):]
    assert len(set(vocab)) == 256
    build_word_tokenizer(vocab).save_pretrained(path)
    return path


def test_prompts_are_comma_separated_runs_and_length_matched_controls(ordinal_llama: Path) -> None:
    from headwiki.detectors.successor_attn import MAX_LEN, MIN_LEN, make_prompts
    from headwiki.models import load_model

    loaded = load_model(str(ordinal_llama), device="cpu")
    tok = loaded.bridge.tokenizer
    ords, ctrls = make_prompts(tok, 40, loaded.start.id, seed=2)
    comma = tok.convert_tokens_to_ids(",")
    assert torch.equal(ords.lengths, ctrls.lengths) and int(ords.lengths.min()) >= MIN_LEN and int(ords.lengths.max()) <= MAX_LEN
    assert torch.equal(ords.valid.sum(-1), ords.lengths - 1) and torch.equal(ords.src, ords.dst - 2 * ords.valid)
    for i in range(ords.n):
        n = int(ords.lengths[i])
        row = ords.tokens[i, :2 * n].tolist()
        assert row[0] == loaded.start.id and row[2::2] == [comma] * (n - 1)
        words = tok.convert_ids_to_tokens(row[1::2])
        seq = {"days": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]}.get(ords.names[i])
        if seq is not None:  # consecutive members of the run
            first = seq.index(words[0])
            assert words == seq[first:first + n]
        control = tok.convert_ids_to_tokens(ctrls.tokens[i, 1:2 * n:2].tolist())
        assert len(set(control)) == n and not set(control) & {"Monday", "one", "January"}
    assert {"days", "months", "number words"} <= set(ords.names)
    again, _ = make_prompts(tok, 40, loaded.start.id, seed=2)
    assert torch.equal(again.tokens, ords.tokens)


def test_planted_successor_attention_head_ranks_first_and_none_without_it(ordinal_llama: Path) -> None:
    """Head 1.2's pattern (hook on hook_pattern) puts member k's attention on member k-1 in ordinal prompts only; the
    score ranks it first on the signal with its CI above 0; the same model without the plant has no head above spd's
    0.05."""
    from headwiki.detectors.successor_attn import (ORDINAL, RANDOM, SIGNAL, SPD_THRESHOLD, make_prompts, prompt_scores,
                                                  successor_attn_scores)
    from headwiki.hooks import pattern_hook
    from headwiki.models import load_model
    from headwiki.ordinals import ordinal_runs

    loaded = load_model(str(ordinal_llama), device="cpu")
    bare = successor_attn_scores(loaded, n_prompts=48, n_boot=200)
    assert bare.record["applicable"] and bare.record["spd_heads"] == []
    assert float(bare.frame[SIGNAL.name].abs().max()) < SPD_THRESHOLD
    ords, _ = make_prompts(loaded.bridge.tokenizer, 12, loaded.start.id, seed=0)
    assert torch.allclose(prompt_scores(loaded.bridge, ords, 5), prompt_scores(loaded.bridge, ords, 1), atol=1e-6)

    tok = loaded.bridge.tokenizer
    ordinal_ids = {t for r in ordinal_runs(lambda s: list(tok.encode(s, add_special_tokens=False))) for t in r.ids}
    seen: dict[str, torch.Tensor] = {}
    embed = loaded.bridge.original_model.model.embed_tokens
    handle = embed.register_forward_hook(lambda mod, args, out: seen.__setitem__("tokens", args[0]))
    h = 2

    def plant(pattern: torch.Tensor, hook: object) -> torch.Tensor:
        out = pattern.clone()
        s = pattern.shape[-1]
        for b in range(pattern.shape[0]):
            if int(seen["tokens"][b, 1]) in ordinal_ids:
                for dst in range(3, s, 2):
                    out[b, h, dst] = 0.0
                    out[b, h, dst, dst - 2] = 1.0
        return out

    loaded.bridge.add_hook(pattern_hook(1), plant, is_permanent=True)  # type: ignore[attr-defined]
    try:
        planted = successor_attn_scores(loaded, n_prompts=48, n_boot=200)
    finally:
        loaded.bridge.reset_hooks(including_permanent=True)  # type: ignore[attr-defined]
        handle.remove()
    f = planted.frame.set_index(["layer", "head"])
    assert f[SIGNAL.name].idxmax() == (1, h) and f.loc[(1, h), f"{SIGNAL.name}_lo"] > 0
    assert f.loc[(1, h), ORDINAL.name] == pytest.approx(1.0)
    assert f.loc[(1, h), RANDOM.name] < 0.3
    assert planted.record["spd_heads"] == [f"L1H{h}"]


def test_no_ordinal_run_gives_nan_columns_and_the_reason(random_llama_dir: Path) -> None:
    from headwiki.detectors.successor_attn import METRICS, successor_attn_scores
    from headwiki.models import load_model

    loaded = load_model(str(random_llama_dir), device="cpu")
    scores = successor_attn_scores(loaded, n_prompts=8, n_boot=10)
    assert scores.record["applicable"] is False and "ordinal" in scores.record["why"]
    assert all(scores.frame[m.name].isna().all() for m in METRICS)


def test_spd_delimiter_ratio_exact_on_the_constructed_case() -> None:
    """spd's ratio on headwiki's constructed case (tests/test_ioi_delimiter.py): raw = mass on delimiters averaged
    over all 13 query rows, baseline = 2/13; pooled over sequences as a ratio of means."""
    from headwiki.detectors.delimiter import delimiter_scores
    from headwiki.detectors.delimiter_spd import DETECTOR, spd_delimiter_parts

    pattern, tokens, meta = _delim_case()
    parts = spd_delimiter_parts(pattern, tokens, meta)
    assert parts.shape == (1, 1, 4, 2)
    boot, fixed = DETECTOR.columns(parts)
    ratio = boot[DETECTOR.name][0, 0]
    s, base = 13, 2 / 13
    uniform_raw = sum(sum(int(tokens[0, j] == 3) for j in range(1, i + 1)) / i for i in range(1, s)) / s
    assert ratio[0].item() == pytest.approx((9 / 13) / base)  # rows 4..12 all on a delimiter: 4.5
    assert ratio[1].item() == pytest.approx(uniform_raw / base)
    assert ratio[2].item() == pytest.approx(1.0)  # previous token: rows 5 and 10
    assert ratio[3].item() == 0.0 and fixed == {}
    ours = delimiter_scores(pattern, tokens, meta)[0, 0]
    assert ours[1].item() == pytest.approx(1.0) and ratio[1].item() != pytest.approx(1.0)  # where the two differ
    # a second window without delimiters: spd pools raw and baseline over the text (ratio of means), so the planted
    # head keeps (9/13 / 2) / (2/13 / 2) = 4.5 as its mean, not the mean of per-window ratios
    no_delim = tokens.clone()
    no_delim[0, [4, 9]] = 7
    both = torch.cat([parts, spd_delimiter_parts(pattern, no_delim, meta)])
    pooled = DETECTOR.columns(both)[0][DETECTOR.name].mean(0)[0]
    assert pooled[0].item() == pytest.approx(4.5) and pooled[2].item() == pytest.approx(1.0)
    none = BatchMeta(half_len=6, delimiters=torch.zeros(16, dtype=torch.bool))
    assert DETECTOR.columns(spd_delimiter_parts(pattern, tokens, none))[0][DETECTOR.name].abs().sum() == 0
