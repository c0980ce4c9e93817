"""Real-model build timing: `headwiki build --model <SmolLM2 GGUF>` with its defaults, in a subprocess, fresh DB.

    python benchmarks/bench_real_model.py [--gguf PATH] [--out benchmarks/results]

Records wall time, each pass's own time (runs.started_at -> finished_at), the load average before and
after (the machine is shared: a loaded machine slows every pass), CPU count, what was exact and what
was estimated, and the validation floors. Writes benchmarks/results/bench-smollm2-<device>.json/.md.
The floor from issue 22 (<= 20 minutes on 2 CPU cores) is reported, not asserted: timing is a figure, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GGUF = REPO / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
FLOOR_S = 20 * 60


def read_floors(con) -> list[dict]:  # noqa: ANN001 - duckdb connection
    """The 'all' group of every validated role, signature and ablation."""
    cols = ("role", "signature", "ablation", "k", "effect", "random_mean", "random_max", "p_paired", "significant")
    return [dict(zip(cols, r)) for r in con.execute(
        f"SELECT {', '.join(cols)} FROM role_validation WHERE group_name = 'all' AND effect IS NOT NULL "
        "ORDER BY role, signature, ablation DESC").fetchall()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=os.environ.get("HEADWIKI_SMOLLM2_GGUF") or str(DEFAULT_GGUF))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--keep", default=None, help="keep the DB and site in this folder")
    args = ap.parse_args()
    if not Path(args.gguf).is_file():
        raise SystemExit(f"{args.gguf} not found: run scripts/fetch_smollm2.sh")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    db, site = work / "smollm2.duckdb", work / "site"
    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "headwiki.cli", "build", "--model", args.gguf, "--db", str(db),
                           "--out", str(site), "--device", args.device], capture_output=True, text=True)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()
    if proc.returncode != 0:
        raise SystemExit(f"build failed: {proc.stderr.strip().splitlines()[-1]}")
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    passes = {r[0]: round(r[1], 1) for r in con.execute(
        "SELECT pass_name, epoch(finished_at) - epoch(started_at) FROM runs ORDER BY started_at").fetchall()}
    floors = read_floors(con)
    con.close()
    summary_lines = [line for line in proc.stdout.splitlines() if line.startswith(("ablate:", "validate:"))]
    result = {
        "command": f"headwiki build --model {Path(args.gguf).name} --device {args.device}",
        "wall_s": round(wall, 1), "floor_s": FLOOR_S, "within_floor": wall <= FLOOR_S, "pass_s": passes,
        "cpus": os.cpu_count(), "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after], "machine": platform.processor() or platform.machine(),
        "exact_vs_estimated": summary_lines, "validation_floors": floors,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bench-smollm2-{args.device}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    md = [f"# SmolLM2-135M-Instruct (Q4_1 GGUF) full build on {args.device}", "",
          f"`{result['command']}` — **{wall / 60:.1f} min** wall (floor 20 min: {'met' if result['within_floor'] else 'NOT met'}); "
          f"{result['cpus']} CPUs visible, load average {load_before[0]:.1f} before / {load_after[0]:.1f} after (shared machine).", "",
          "| pass | seconds |", "|---|---|", *[f"| {k} | {v} |" for k, v in passes.items()], "",
          *[f"- {line}" for line in summary_lines], "",
          "| role | signature | ablation | k | removed | random sets: mean / best | paired p (max over sets) | significant |",
          "|---|---|---|---|---|---|---|---|",
          *[f"| {f['role']} | {f['signature']} | {f['ablation']} | {f['k']} | {f['effect']:.1%} | {f['random_mean']:.1%} / "
            f"{f['random_max']:.1%} | {f['p_paired']:.2g} | {f['significant']} |" for f in floors]]
    (out / f"bench-smollm2-{args.device}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
