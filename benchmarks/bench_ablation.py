"""Benchmark: exact ablation sweep vs a naive loop vs the prefix-reuse lower bound, plus attribution patching.

Model: random-init GPT-2-small shape (12 layers x 12 heads, d_model 768, vocab 50257) built from a
config (no download), word-level tokenizer, synthetic items (headwiki.ablation.synthetic).

* naive: one full forward (all blocks + full unembedding) per head per ablation per batch;
* sweep: AblationRunner.sweep (prefix reuse from the ablated layer, unembedding only at scored
  positions, several heads per forward via batch replication);
* prefix-reuse lower bound: the block compute the sweep's own forwards cannot avoid: for every
  forward (R replicas of a batch) the (n_layers - L) suffix blocks, timed per block from a measured
  full block stack at the same batch shape (no unembedding, no hooks, no scoring, no overhead);
* attribution: one forward + backward per batch for all heads.

The sweep and the naive loop must give identical numbers (asserted). Floor: sweep <= 0.6x naive.
By default the sweep and naive loop cover `heads_per_layer` heads of every layer (to fit in a few
minutes on 2 CPU cores); --heads-per-layer 12 runs all 144 heads.

    python benchmarks/bench_ablation.py [--items 8] [--heads-per-layer 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from headwiki.ablation.attribution import attribution_estimates
from headwiki.ablation.scoring import bridge_encoder, encode_items, logit_diffs
from headwiki.ablation.sweep import ABLATIONS, AblationRunner, skip_prefix
from headwiki.ablation.synthetic import synthetic_items
from headwiki.models import load_model
from headwiki.random_models import write_random_model

GPT2_SMALL = dict(n_layers=12, n_heads=12, d_model=768, vocab_size=50257, n_ctx=128)


def run_benchmark(n_items: int = 8, heads_per_layer: int = 2, batch_size: int = 64, max_rows: int = 256,
                  shape: dict[str, int] | None = None, device: str = "cpu", seed: int = 0,
                  model_dir: str | Path | None = None) -> dict[str, Any]:
    """Time naive vs sweep vs lower bound vs attribution on one model; returns a dict of timings and checks."""
    shape = dict(GPT2_SMALL if shape is None else shape)
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(model_dir) if model_dir else write_random_model(Path(tmp) / "gpt2-small-random", arch="gpt2", seed=seed, **shape)
        loaded = load_model(str(path), device=device)
        bridge = loaded.bridge
        items = synthetic_items(n_items, min(shape["vocab_size"] - 4, 5000), seed=seed)
        enc = encode_items(items, bridge_encoder(bridge), loaded.info.n_ctx)
        runner = AblationRunner(bridge, enc, batch_size=batch_size, max_rows=max_rows)
        t0 = time.perf_counter()
        runner.clean()
        t_clean = time.perf_counter() - t0
        heads = list(range(min(heads_per_layer, runner.n_heads)))
        kinds = list(ABLATIONS)

        t0 = time.perf_counter()
        swept = runner.sweep(kinds, heads=heads)
        t_sweep = time.perf_counter() - t0
        t0 = time.perf_counter()
        naive = runner.naive_sweep(kinds, heads=heads)
        t_naive = time.perf_counter() - t0

        # lower bound: the suffix-block compute the sweep's forwards cannot avoid, at the sweep's batch shape
        # (R replicas); per-block time from a measured full block stack (no unembedding, no hooks, no scoring)
        r = runner.replicas_per_forward
        n_layers = runner.n_layers
        forwards_per_layer = -(-len(heads) * len(kinds) // r)
        reps = 3
        t_lower = 0.0
        for chunk in runner.chunks:
            x = chunk.tokens.repeat(r, 1)
            t0 = time.perf_counter()
            for _ in range(reps):
                with skip_prefix(bridge, 0):
                    bridge(x)
            per_block = (time.perf_counter() - t0) / reps / n_layers
            t_lower += per_block * forwards_per_layer * sum(n_layers - L for L in range(n_layers))

        torch.set_grad_enabled(True)
        t0 = time.perf_counter()
        attribution_estimates(runner, kinds)
        t_atp = time.perf_counter() - t0
        torch.set_grad_enabled(False)

        max_diff = max(float((swept[k] - naive[k]).abs().max()) for k in kinds)
        same_ld_sign = all(bool(torch.equal(logit_diffs(swept[k]) > 0, logit_diffs(naive[k]) > 0)) for k in kinds)
        n_ablations = len(heads) * n_layers * len(kinds)
        return {
            "model": f"random GPT-2 {shape['n_layers']}x{shape['n_heads']} d{shape['d_model']} vocab {shape['vocab_size']}",
            "device": device, "n_items": n_items, "n_units": enc.n_units, "max_tokens": int(enc.lengths.max()),
            "heads_per_layer": len(heads), "ablations": kinds, "n_head_ablations": n_ablations,
            "prefix_reuse": runner.fast, "replicas_per_forward": runner.replicas_per_forward,
            "clean_s": t_clean, "naive_s": t_naive, "sweep_s": t_sweep, "prefix_lower_bound_s": t_lower,
            "attribution_s": t_atp, "sweep_over_naive": t_sweep / t_naive, "sweep_over_lower_bound": t_sweep / t_lower,
            "attribution_over_sweep": t_atp / t_sweep, "max_abs_diff_sweep_vs_naive": max_diff,
            "identical_decisions": same_ld_sign, "floor_met": t_sweep <= 0.6 * t_naive,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--heads-per-layer", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-rows", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    result = run_benchmark(n_items=args.items, heads_per_layer=args.heads_per_layer, batch_size=args.batch_size,
                           max_rows=args.max_rows, device=args.device)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    assert result["max_abs_diff_sweep_vs_naive"] < 1e-4 and result["identical_decisions"], "sweep and naive loop disagree"
    assert result["floor_met"], f"sweep took {result['sweep_over_naive']:.2f}x the naive loop (floor 0.6x)"


if __name__ == "__main__":
    main()
