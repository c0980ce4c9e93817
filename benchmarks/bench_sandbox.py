"""Benchmark: how long one toggle of the negation ablation sandbox takes (headwiki.ablation.sandbox.Sandbox.evaluate).

Model: the embedded toy model (2 layers x 8 heads) on its full toy dataset (432 items, 1,296 prompts), the
defaults of `headwiki sandbox --model toy` (batch 64, 2000 bootstrap resamples, 2000 sign flips). A toggle =
one new head set evaluated: the ablated forward over every item (prefix reuse from the set's first layer,
resample = 3 donor draws) plus the statistics (Wilson CIs, paired bootstrap CIs, sign-flip p, reversal, flips).
Each head set is new (the memo never answers), so every figure is a real recomputation; median over sets.

    python benchmarks/bench_sandbox.py [--threads 2] [--model toy] [--max-items N] [--json out.json] [--md out.md]

Issue 21's target: a toggle on the toy model answers in under 2 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from headwiki.ablation.sandbox import Sandbox
from headwiki.models import load_model

TARGET_S = 2.0


def run_benchmark(threads: int = 2, model: str = "toy", dataset: str | None = None, max_items: int | None = None) -> dict[str, Any]:
    from headwiki.ablation.items import default_dataset

    torch.set_num_threads(threads)
    loaded = load_model(model, device="cpu")
    dataset = dataset or default_dataset(model)
    t0 = time.perf_counter()
    sb = Sandbox(loaded, dataset, max_items=max_items)
    open_s = time.perf_counter() - t0
    nL, nH = sb.n_layers, sb.n_heads
    spread = sorted({round(i * (nL * nH - 1) / 5) for i in range(6)})  # 6 single heads spread over the layers
    singles = [[(i // nH, i % nH)] for i in spread]
    pairs = [[(0, h), (nL - 1, (h + 3) % nH)] for h in range(0, min(nH, 8), 2)]  # 4 cross-layer pairs (start at layer 0)
    rows = []
    for kind in ("zero", "mean", "resample"):
        for name, sets in (("one head", singles), ("two heads, layers 0 and last", pairs)):
            total, forward, clean = [], [], []
            for heads in sets:
                t0 = time.perf_counter()
                with torch.no_grad():  # the reference in the same moment: one plain clean forward over every item
                    for chunk in sb.runner.chunks:
                        loaded.bridge(chunk.tokens)
                clean.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                with torch.no_grad():
                    sb.runner.run_specs([(_replica(heads), kind)])
                forward.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                sb.evaluate(heads, kind)
                total.append(time.perf_counter() - t0)
            rows.append({"kind": kind, "head set": name, "n_sets": len(sets), "toggle_s": statistics.median(total),
                         "toggle_max_s": max(total), "forward_s": statistics.median(forward),
                         "clean_forward_s": statistics.median(clean),
                         "toggle_over_clean": statistics.median(t / c for t, c in zip(total, clean))})
    return {"machine": f"{platform.machine()}  {threads} torch threads; torch {torch.__version__}", "model": f"{loaded.info.name} {nL}x{nH}",
            "dataset": sb.dataset.name, "n_items": len(sb.dataset.items), "open_s": open_s, "target_s": TARGET_S, "rows": rows,
            "load_average_1m": os.getloadavg()[0], "cpus": os.cpu_count()}


def _replica(heads: list[tuple[int, int]]) -> dict[int, tuple[int, ...]]:
    out: dict[int, list[int]] = {}
    for L, h in heads:
        out.setdefault(L, []).append(h)
    return {L: tuple(sorted(hs)) for L, hs in out.items()}


def markdown(r: dict[str, Any]) -> str:
    lines = [f"Sandbox toggle latency — {r['model']} on {r['dataset']} ({r['n_items']} items); {r['machine']}.", "",
             f"Opening (encode + clean run with cached resid/z): {r['open_s']:.2f} s. Machine load while measuring: "
             f"1-minute load average {r['load_average_1m']:.1f} on {r['cpus']} CPUs (shared machine: absolute times move with it; "
             "the ratio to a clean forward measured beside each toggle much less).", "",
             "| ablation | head set | sets | toggle median s | toggle max s | the ablated forward alone s | clean full forward s | "
             f"toggle / clean forward (median) | under {r['target_s']:.0f} s |", "|---|---|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        lines.append(f"| {x['kind']} | {x['head set']} | {x['n_sets']} | {x['toggle_s']:.2f} | {x['toggle_max_s']:.2f} | "
                     f"{x['forward_s']:.2f} | {x['clean_forward_s']:.2f} | {x['toggle_over_clean']:.2f} | "
                     f"{'yes' if x['toggle_max_s'] < r['target_s'] else 'NO'} |")
    lines += ["", "A toggle = Sandbox.evaluate on a head set not seen before (forward over every item + all statistics). "
              "Reproduce: `python benchmarks/bench_sandbox.py --threads 2` (toy), "
              "`... --model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --max-items 100` (SmolLM2)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="toy", help="toy (default) or any --model value, e.g. the SmolLM2 .gguf")
    parser.add_argument("--dataset", default=None, help="default: toy for the toy model, english otherwise")
    parser.add_argument("--max-items", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--md", type=Path, default=None)
    args = parser.parse_args()
    result = run_benchmark(threads=args.threads, model=args.model, dataset=args.dataset, max_items=args.max_items)
    text = markdown(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.md:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
