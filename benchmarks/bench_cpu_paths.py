"""Side-by-side CPU ratios for the SmolLM2 build's speed changes (old path vs new path, one run).

    python benchmarks/bench_cpu_paths.py [--gguf PATH] [--rounds 2] [--out benchmarks/results]

1. OpenMP wait policy. The same fixed workload (the validation pass's forwards: 8 single-head zero
   ablations of SmolLM2 on 16 repeated random-token sequences, L = 12, 2 forwards of 4 replicas,
   prefix reuse) in a fresh subprocess per sample, alternating libgomp's default wait policy (the old
   behaviour: no OMP_WAIT_POLICY set) and OMP_WAIT_POLICY=PASSIVE (what `headwiki` sets now when the
   user has not). Both use torch's default thread count (2 here). Reports the workload's wall and CPU
   time (user + system, getrusage inside the subprocess, model loading excluded), the 1-min load average
   at each sample, and checks that the results are bit-identical.
2. Attribution patching (ablate): one shared backward for S and LD_neg vs one backward per metric, on the
   same AblationRunner (SmolLM2, 16 English items), alternated in one process; checks they agree.

Timing is a figure, not a test: the machine is shared, so read the ratios next to the load average.
Writes benchmarks/results/bench-cpu-paths.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `headwiki` runs (before torch is imported); part 1 sets its own
REPO = Path(__file__).resolve().parents[1]
DEFAULT_GGUF = REPO / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

WORKLOAD = r'''
import json, os, resource, sys, time
import torch
from headwiki.models import load_model
from headwiki.ablation.signature import SignatureRunner
from headwiki.detectors.data import ordinary_token_ids, repeat_sequences
loaded = load_model(sys.argv[1], device="cpu")
b, info = loaded.bridge, loaded.info
tokens = repeat_sequences(ordinary_token_ids(b.tokenizer, info.d_vocab), 16, 12, loaded.start.id, 7919)
runner = SignatureRunner(b, tokens, 12, [(3, 1), (5, 2)], max_rows=64)
runner.clean()
specs = [({L: (h,)}, "zero") for L, h in [(1, 4), (2, 3), (4, 0), (6, 6), (8, 1), (10, 2), (13, 5), (16, 8)]]
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t, c, load = time.perf_counter(), cpu(), os.getloadavg()[0]
drops, _ = runner.measure(specs)
print(json.dumps({"wall_s": time.perf_counter() - t, "cpu_s": cpu() - c, "load": load, "threads": torch.get_num_threads(),
                  "drops": drops.flatten().tolist()}))
'''


def omp_policy(gguf: str, rounds: int) -> dict[str, Any]:
    """Alternate the workload under the default wait policy and PASSIVE; -> samples and median ratios."""
    samples: dict[str, list[dict[str, Any]]] = {"default": [], "PASSIVE": []}
    for _ in range(rounds):
        for policy in ("default", "PASSIVE"):
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            if policy == "PASSIVE":
                env["OMP_WAIT_POLICY"] = "PASSIVE"
            proc = subprocess.run([sys.executable, "-c", WORKLOAD, gguf], env=env, capture_output=True, text=True, check=True)
            samples[policy].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(policy, {k: round(v, 2) for k, v in samples[policy][-1].items() if k != "drops"}, flush=True)
    same = all(s["drops"] == samples["default"][0]["drops"] for p in samples.values() for s in p)

    def med(policy: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[policy])

    return {
        "workload": "8 single-head zero ablations on 16 repeated random-token sequences (validation forwards), SmolLM2",
        "samples": {p: [{k: round(v, 3) for k, v in s.items() if k != "drops"} for s in ss] for p, ss in samples.items()},
        "median_wall_s": {p: round(med(p, "wall_s"), 2) for p in samples},
        "median_cpu_s": {p: round(med(p, "cpu_s"), 2) for p in samples},
        "wall_ratio_passive_over_default": round(med("PASSIVE", "wall_s") / med("default", "wall_s"), 3),
        "cpu_ratio_passive_over_default": round(med("PASSIVE", "cpu_s") / med("default", "cpu_s"), 3),
        "results_identical": same,
    }


def attribution(gguf: str, rounds: int) -> dict[str, Any]:
    """Shared-backward vs per-metric-backward attribution on one runner, alternated."""
    import torch

    from headwiki.ablation.attribution import ATP_METRICS, attribution_estimates
    from headwiki.ablation.items import resolve_dataset
    from headwiki.ablation.scoring import bridge_encoder, encode_items
    from headwiki.ablation.sweep import AblationRunner
    from headwiki.models import load_model

    loaded = load_model(gguf, device="cpu")
    ds = resolve_dataset("english", seed=0, max_items=16)
    enc = encode_items(ds.items, bridge_encoder(loaded.bridge), loaded.info.n_ctx, pad_id=loaded.bridge.tokenizer.pad_token_id or 0)
    runner = AblationRunner(loaded.bridge, enc, batch_size=64)
    runner.clean()

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    samples: dict[str, list[dict[str, float]]] = {"per_metric": [], "shared": []}
    outs = {}
    for _ in range(rounds):
        for name in ("per_metric", "shared"):
            t, c, load = time.perf_counter(), cpu(), os.getloadavg()[0]
            outs[name] = attribution_estimates(runner, ["zero", "mean"], shared_backward=name == "shared")
            samples[name].append({"wall_s": round(time.perf_counter() - t, 3), "cpu_s": round(cpu() - c, 3), "load": round(load, 2)})
            print(name, samples[name][-1], flush=True)
    diff = max(float((outs["shared"][m][k] - outs["per_metric"][m][k]).abs().max()) for m in ATP_METRICS for k in ("zero", "mean"))
    scale = max(float(outs["per_metric"][m][k].abs().max()) for m in ATP_METRICS for k in ("zero", "mean"))

    def med(name: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[name])

    return {
        "workload": f"attribution patching, zero + mean, metrics {list(ATP_METRICS)}, 16 English items ({enc.n_units} sequences), SmolLM2",
        "samples": samples, "torch_threads": torch.get_num_threads(),
        "wall_ratio_shared_over_per_metric": round(med("shared", "wall_s") / med("per_metric", "wall_s"), 3),
        "cpu_ratio_shared_over_per_metric": round(med("shared", "cpu_s") / med("per_metric", "cpu_s"), 3),
        "max_abs_diff": diff, "max_abs_value": scale,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=os.environ.get("HEADWIKI_SMOLLM2_GGUF") or str(DEFAULT_GGUF))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--only", choices=("omp", "attribution"), default=None,
                    help="run one part; the other part's figures are kept from the existing JSON in --out")
    args = ap.parse_args()
    if not Path(args.gguf).is_file():
        raise SystemExit(f"{args.gguf} not found: run scripts/fetch_smollm2.sh")
    result: dict[str, Any] = {"cpus": os.cpu_count(), "load_avg_before": [round(x, 2) for x in os.getloadavg()],
                              "env_omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    if args.only in (None, "omp"):
        result["omp_wait_policy"] = omp_policy(args.gguf, args.rounds)
    if args.only in (None, "attribution"):
        result["attribution"] = attribution(args.gguf, args.rounds)
    result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.only and (out / "bench-cpu-paths.json").is_file():  # one part re-run: keep the other part's figures
        previous = json.loads((out / "bench-cpu-paths.json").read_text())
        kept = [k for k in previous if k not in result and k != "kept_from_earlier_run"]
        for part in kept:
            result[part] = previous[part]
        result["kept_from_earlier_run"] = kept
    (out / "bench-cpu-paths.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# CPU paths, side by side (SmolLM2-135M, 2 shared cores)", "",
          f"`python benchmarks/bench_cpu_paths.py --rounds {args.rounds}`; {result['cpus']} CPUs, load average "
          f"{result['load_avg_before'][0]:.1f} before / {result['load_avg_after'][0]:.1f} after (shared machine: read the ratios).", ""]
    if "omp_wait_policy" in result:
        o = result["omp_wait_policy"]
        md += ["| OpenMP wait policy | median wall s | median CPU s |", "|---|---|---|",
               *[f"| {p} | {o['median_wall_s'][p]} | {o['median_cpu_s'][p]} |" for p in o["median_wall_s"]], "",
               f"PASSIVE / default: wall **{o['wall_ratio_passive_over_default']}x**, CPU **{o['cpu_ratio_passive_over_default']}x**; "
               f"results bit-identical: {o['results_identical']}. Workload: {o['workload']}; load per sample in the JSON.", ""]
    if "omp_wait_policy_earlier_run" in result:
        e = result["omp_wait_policy_earlier_run"]
        md += [f"Earlier run ({e['note']}): median wall default {e['median_wall_s']['default']} s / PASSIVE "
               f"{e['median_wall_s']['PASSIVE']} s, CPU {e['median_cpu_s']['default']} / {e['median_cpu_s']['PASSIVE']} s: "
               "at lighter load PASSIVE saved less CPU and its wall time was not better.", ""]
    if "attribution" in result:
        a = result["attribution"]
        md += [f"Attribution patching, one shared backward with the unweighted (affirmative) units left out / one backward per metric over every unit (the old path): wall **{a['wall_ratio_shared_over_per_metric']}x**, "
               f"CPU **{a['cpu_ratio_shared_over_per_metric']}x** (max |diff| {a['max_abs_diff']:.1e} on values up to {a['max_abs_value']:.2g}). "
               f"Workload: {a['workload']}.", ""]
    (out / "bench-cpu-paths.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
