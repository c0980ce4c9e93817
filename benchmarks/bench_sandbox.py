"""Benchmark: how long one toggle of the negation ablation sandbox takes (headwiki.ablation.sandbox.Sandbox.evaluate).

A toggle = one head set not seen before (the memo never answers): the ablated forward over every item (prefix reuse:
only blocks from the set's first layer on run, from the cached clean residual stream; resample = 3 donor draws batched
as replicas of one forward) plus the statistics (Wilson CIs, paired bootstrap CIs, sign-flip p, reversal, flips). The
defaults of `headwiki sandbox` (batch 64, 2000 bootstrap resamples, 2000 sign flips). Rows: each ablation kind x a
head in the FIRST layer (the worst case: every block runs) and in the LAST layer (the best case); median and max over
`--sets` different heads. The forward part is timed through the engine's per-forward callback (the app's progress bar),
so no forward runs twice; a plain clean forward over every item is timed at the start and at the end as the machine's
yardstick, and the 1-minute load average is recorded before each row (the machine is shared).

    python benchmarks/bench_sandbox.py [--threads 2] [--model toy] [--max-items N] [--sets 3] [--json out.json] [--md out.md]

Issue 21's targets: a toggle on the toy model under 2 s on 2 CPU cores; SmolLM2 on 100 items well under a minute.
"""

from __future__ import annotations

import os

from headwiki.sandbox import APP_THREAD_ENV  # torch-free, numpy-free

for _name, _value in APP_THREAD_ENV.items():  # as `headwiki sandbox` runs the app, before numpy and torch load
    os.environ.setdefault(_name, _value)

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from headwiki.ablation.sandbox import Sandbox
from headwiki.models import load_model

TARGET_S = 2.0
KINDS = ("zero", "mean", "resample")


def _clean_forward_s(sb: Sandbox, loaded: Any) -> float:
    t0 = time.perf_counter()
    with torch.no_grad():
        for chunk in sb.runner.chunks:
            loaded.bridge(chunk.tokens)
    return time.perf_counter() - t0


def run_benchmark(threads: int = 2, model: str = "toy", dataset: str | None = None, max_items: int | None = None,
                  n_sets: int = 3) -> dict[str, Any]:
    from headwiki.ablation.items import default_dataset

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    loaded = load_model(model, device="cpu")
    load_s = time.perf_counter() - t0
    dataset = dataset or default_dataset(model)
    t0 = time.perf_counter()
    sb = Sandbox(loaded, dataset, max_items=max_items)
    open_s = time.perf_counter() - t0
    nL, nH = sb.n_layers, sb.n_heads
    heads = [round(i * (nH - 1) / max(1, n_sets - 1)) for i in range(n_sets)] if n_sets > 1 else [0]
    clean_before = _clean_forward_s(sb, loaded)
    rows = []
    for kind in KINDS:
        for where, layer in (("first (L0)", 0), (f"last (L{nL - 1})", nL - 1)):
            load = os.getloadavg()[0]
            total, forward, steps = [], [], 0
            for h in heads:
                marks: list[float] = []
                steps = sb.n_steps([(layer, h)], kind)
                t0 = time.perf_counter()
                sb.evaluate([(layer, h)], kind, on_step=lambda: marks.append(time.perf_counter()))
                total.append(time.perf_counter() - t0)
                forward.append(marks[-1] - t0)
            rows.append({"kind": kind, "layer": where, "n_sets": len(heads), "forwards": steps, "toggle_s": statistics.median(total),
                         "toggle_max_s": max(total), "forward_s": statistics.median(forward),
                         "stats_s": statistics.median(t - f for t, f in zip(total, forward)), "load_1m": load})
    clean_after = _clean_forward_s(sb, loaded)
    return {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {threads} torch threads, OMP_WAIT_POLICY="
                       f"{os.environ.get('OMP_WAIT_POLICY')}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; torch {torch.__version__}",
            "model": f"{loaded.info.name} {nL}x{nH}", "dataset": sb.dataset.name, "n_items": len(sb.dataset.items),
            "n_prompts": int(sb.runner.enc.n_units), "load_s": load_s, "open_s": open_s, "target_s": TARGET_S,
            "clean_forward_s": [clean_before, clean_after], "load_1m": [r["load_1m"] for r in rows] + [os.getloadavg()[0]],
            "rows": rows}


def markdown(r: dict[str, Any]) -> str:
    target = r["target_s"] if r["model"].startswith("toy") else 60.0
    loads = r["load_1m"]
    lines = [f"Sandbox toggle latency — {r['model']} on {r['dataset']} ({r['n_items']} items, {r['n_prompts']} sequences); "
             f"{r['machine']}.", "",
             f"Model load {r['load_s']:.1f} s; opening the sandbox (encode + the clean run caching every layer's residual stream "
             f"and z) {r['open_s']:.1f} s. A plain clean forward over every item: {r['clean_forward_s'][0]:.2f} s before, "
             f"{r['clean_forward_s'][1]:.2f} s after the rows. 1-minute load average while measuring: "
             f"{min(loads):.1f} to {max(loads):.1f} (shared machine: absolute times move with it).", "",
             f"| ablation | head's layer | heads timed | forwards | toggle median s | toggle max s | of which forward s | "
             f"of which statistics s | toggle / clean forward | load 1m | max under {target:.0f} s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    clean = sum(r["clean_forward_s"]) / len(r["clean_forward_s"])
    for x in r["rows"]:
        lines.append(f"| {x['kind']} | {x['layer']} | {x['n_sets']} | {x['forwards']} | {x['toggle_s']:.2f} | {x['toggle_max_s']:.2f} | "
                     f"{x['forward_s']:.2f} | {x['stats_s']:.2f} | {x['toggle_s'] / clean:.2f} | {x['load_1m']:.1f} | "
                     f"{'yes' if x['toggle_max_s'] < target else 'NO'} |")
    lines += ["", "toggle / clean forward: the median toggle over the mean of the two plain clean forwards, much less load-dependent "
              "than the seconds (both slow down together unless the load changes in between): on a quiet machine a toggle takes "
              "about that multiple of that machine's clean forward.",
              "", "A toggle = Sandbox.evaluate on a head set not seen before (the ablated forward over every item + all "
              "statistics; the app shows a progress bar over its `forwards`). Reproduce: "
              "`python benchmarks/bench_sandbox.py --threads 2` (toy), "
              "`python benchmarks/bench_sandbox.py --threads 2 --model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --max-items 100 --sets 2` (SmolLM2)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="toy", help="toy (default) or any --model value, e.g. the SmolLM2 .gguf")
    parser.add_argument("--dataset", default=None, help="default: toy for the toy model, english otherwise")
    parser.add_argument("--max-items", type=int, default=None)
    parser.add_argument("--sets", type=int, default=3, help="heads timed per row (different heads of the same layer)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--md", type=Path, default=None)
    args = parser.parse_args()
    result = run_benchmark(threads=args.threads, model=args.model, dataset=args.dataset, max_items=args.max_items, n_sets=args.sets)
    text = markdown(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.md:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
