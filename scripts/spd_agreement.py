"""goodfire-ai/spd's successor and delimiter formulas vs headwiki's, head by head, on one model (issue 19).

usage: python scripts/spd_agreement.py [--model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf] [--n-prompts 500]
       [--out benchmarks/results/spd-agreement-smollm2.json]

(a) successor: spd's attention score (headwiki.detectors.successor_attn: ordinal predecessor attention, random-word
    control, signal; spd marks signal > 0.05) vs headwiki's OV successor score (headwiki.detectors.successor, role
    threshold 0.5; the role also needs its Wilson lower bound above the random-init control, not computed here).
(b) delimiter: spd's ratio (headwiki.detectors.delimiter_spd, spd marks > 2.0) vs headwiki's delimiter score (role
    threshold 3.0 and CI lower bound above the random-init control, the control not computed here), on the detect
    pass's default natural-text windows (64 windows of 65 tokens, English passages).
Loads the model once; writes a JSON record and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_MODEL = ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def _name(i: int, H: int) -> str:
    return f"L{i // H}H{i % H}"


def _heads(mask: np.ndarray, H: int) -> list[str]:
    return [_name(int(i), H) for i in np.flatnonzero(mask)]


def _top(x: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-np.nan_to_num(x, nan=-np.inf), kind="stable")[:k]]


def successor_part(loaded, n_prompts: int, seed: int, n_boot: int) -> dict:
    from headwiki.detectors import successor_attn as sa
    from headwiki.detectors import weights as weight_mod
    from headwiki.detectors.data import ordinary_token_ids
    from headwiki.detectors.successor import METRIC as OV, THRESHOLD as OV_THRESHOLD
    from headwiki.stats import spearman

    H = loaded.info.n_heads
    t0 = time.time()
    attn = sa.successor_attn_scores(loaded, n_prompts=n_prompts, seed=seed, n_boot=n_boot)
    t_attn = time.time() - t0
    ordinary = ordinary_token_ids(loaded.bridge.tokenizer, loaded.info.d_vocab)
    ctx = weight_mod.weight_context(loaded.bridge.tokenizer, ordinary, seed)
    ov_cols = weight_mod.weight_scores(weight_mod.ov_weights(loaded.bridge), ctx)
    ov = ov_cols[OV.name].reshape(-1).numpy()
    ov_lo = ov_cols[f"{OV.name}_lo"].reshape(-1).numpy()
    f = attn.frame
    sig, lo, hi = (f[c].to_numpy() for c in (sa.SIGNAL.name, f"{sa.SIGNAL.name}_lo", f"{sa.SIGNAL.name}_hi"))
    ordv, ctrl = f[sa.ORDINAL.name].to_numpy(), f[sa.RANDOM.name].to_numpy()
    spd_mask = sig > sa.SPD_THRESHOLD
    ov_mask = ov >= OV_THRESHOLD
    top_sig, top_ov = _top(sig, 10), _top(ov, 10)
    rank_ov = {i: r + 1 for r, i in enumerate(_top(ov, len(ov)))}
    rank_sig = {i: r + 1 for r, i in enumerate(_top(sig, len(sig)))}
    return {
        "n_prompts": attn.record.get("n_prompts"), "n_pairs": attn.record.get("n_pairs"), "runs": attn.record.get("runs"),
        "seconds_attention_score": round(t_attn, 1),
        "spearman_signal_vs_ov": spearman(sig, ov), "spearman_ordinal_attn_vs_ov": spearman(ordv, ov),
        "top10_overlap_signal_vs_ov": len(set(top_sig) & set(top_ov)),
        "top10_signal": [{"head": _name(i, H), "signal": round(float(sig[i]), 4),
                          "ci": [round(float(lo[i]), 4), round(float(hi[i]), 4)], "ordinal": round(float(ordv[i]), 4),
                          "control": round(float(ctrl[i]), 4), "ov_successor": round(float(ov[i]), 3),
                          "ov_rank": rank_ov[i]} for i in top_sig],
        "top10_ov": [{"head": _name(i, H), "ov_successor": round(float(ov[i]), 3),
                      "ov_wilson_lo": round(float(ov_lo[i]), 3), "signal": round(float(sig[i]), 4),
                      "signal_ci": [round(float(lo[i]), 4), round(float(hi[i]), 4)], "signal_rank": rank_sig[i]}
                     for i in top_ov],
        "spd_heads_signal_over_0.05": _heads(spd_mask, H),
        "spd_heads_with_ci_lo_over_0.05": _heads(lo > sa.SPD_THRESHOLD, H),
        "spd_heads_with_ci_lo_over_0": _heads(lo > 0, H),
        "ov_heads_score_over_threshold": _heads(ov_mask, H),
        "both": _heads(spd_mask & ov_mask, H),
        "max_abs_signal": float(np.nanmax(np.abs(sig))),
    }


def delimiter_part(loaded, seed: int, n_boot: int) -> dict:
    from headwiki.detectors.data import resolve_text, text_windows
    from headwiki.detectors.delimiter import DETECTOR as OURS, ROLE, delimiter_mask
    from headwiki.detectors.delimiter_spd import DETECTOR as SPD, SPD_THRESHOLD
    from headwiki.detectors.registry import REGISTRY, BatchMeta, default_registry
    from headwiki.detectors.run import DEFAULT_HALF_LEN, DEFAULT_N_SEQS
    from headwiki.detectors.scoring import score_inputs
    from headwiki.stats import bootstrap_mean_ci, spearman

    default_registry()
    info, tok = loaded.info, loaded.bridge.tokenizer
    length = 2 * DEFAULT_HALF_LEN + 1
    source = resolve_text(None, False, DEFAULT_N_SEQS * length)
    windows = text_windows(tok, source.passages, DEFAULT_N_SEQS, length, loaded.start.id)
    mask = delimiter_mask(tok, info.d_vocab)
    meta = BatchMeta(half_len=DEFAULT_HALF_LEN, delimiters=mask)
    per_seq = score_inputs(loaded.bridge, {"text": windows}, REGISTRY, meta, 16, only={OURS.name, SPD.name})
    ours, ours_lo, _ = (x.reshape(-1).numpy() for x in bootstrap_mean_ci(per_seq[OURS.name], n_boot=n_boot, seed=seed))
    spd_per_seq = SPD.columns(per_seq[SPD.name])[0][SPD.name]
    spd, spd_lo, spd_hi = (x.reshape(-1).numpy() for x in bootstrap_mean_ci(spd_per_seq, n_boot=n_boot, seed=seed))
    H = info.n_heads
    spd_mask, ours_mask = spd > SPD_THRESHOLD, ours >= float(ROLE.threshold or 0.0)
    frac = float(mask[windows].float().mean())
    return {
        "text": source.name, "windows": int(len(windows)), "tokens_per_window": length,
        "delimiter_fraction_all_tokens": round(frac, 4),
        "delimiter_fraction_without_bos": round(float(mask[windows[:, 1:]].float().mean()), 4),
        "spearman_spd_vs_headwiki": spearman(spd, ours),
        "spd_over_2": _heads(spd_mask, H), "headwiki_over_3": _heads(ours_mask, H),
        "both": _heads(spd_mask & ours_mask, H),
        "headwiki_over_3_with_ci_lo_over_3": _heads(ours_lo >= float(ROLE.threshold or 0.0), H),
        "top10_overlap": len(set(_top(spd, 10)) & set(_top(ours, 10))),
        "spd_max": float(spd.max()), "headwiki_max": float(ours.max()),
        "spd_median": float(np.median(spd)), "headwiki_median": float(np.median(ours)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--n-prompts", type=int, default=500)  # spd's N_PROMPTS
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", default="benchmarks/results/spd-agreement-smollm2.json")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    from headwiki.models import load_model

    t0 = time.time()
    loaded = load_model(args.model, device="cpu")
    out = {"model": loaded.info.name, "start_token": loaded.start.record(), "seed": args.seed, "n_boot": args.n_boot,
           "load_seconds": round(time.time() - t0, 1)}
    out["successor"] = successor_part(loaded, args.n_prompts, args.seed, args.n_boot)
    out["delimiter"] = delimiter_part(loaded, args.seed, args.n_boot)
    out["total_seconds"] = round(time.time() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
