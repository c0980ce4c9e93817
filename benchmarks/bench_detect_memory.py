"""Benchmark: peak resident memory of `headwiki detect` against the model's weight size (issue 17).

Model: a random-init GPT-2-architecture model, 24 layers x 16 heads, d_model 512 (default; --d-model),
written to a temp dir (no download). Each measurement is a fresh subprocess into a fresh DB, so the
random-init control is computed: `headwiki info` (load only: imports + model + packed weights are not
built yet) and `headwiki detect` with small data (--n-seqs 4 --seq-len 8), whose peak is where the model,
its packed weights and the control model meet. Peak RSS is the child's ru_maxrss (this script imports
nothing heavy before the children run, so a child's count is its own).

Run: ``python benchmarks/bench_detect_memory.py [--layers 24] [--heads 16] [--d-model 512]``
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}


def peak_mb(args: list[str]) -> float:
    """Run `python -m headwiki.cli ARGS` in a child and return its peak RSS in MB (ru_maxrss of the child)."""
    code = ("import resource, subprocess, sys\n"
            "p = subprocess.run([sys.executable, '-m', 'headwiki.cli', *sys.argv[1:]], capture_output=True, text=True)\n"
            "assert p.returncode == 0, p.stderr[-2000:]\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=ENV, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--d-model", type=int, default=512)
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        subprocess.run([sys.executable, "-c",
                        "import sys\nfrom headwiki.random_models import write_random_model\n"
                        f"write_random_model(sys.argv[1], n_layers={a.layers}, n_heads={a.heads}, d_model={a.d_model}, vocab_size=256, n_ctx=64)",
                        str(model)], check=True, env=ENV, capture_output=True)
        weights_mb = sum(p.stat().st_size for p in model.glob("*.safetensors")) / 2**20
        load = peak_mb(["info", "--model", str(model), "--device", "cpu"])
        detect = peak_mb(["detect", "--model", str(model), "--db", str(Path(tmp) / "hw.duckdb"), "--device", "cpu",
                          "--n-seqs", "4", "--seq-len", "8", "--batch-size", "4"])
    print(f"| model | fp32 weights MB | peak RSS load-only MB | peak RSS detect MB | (detect - load) / weights |")
    print("|---|---|---|---|---|")
    print(f"| random {a.layers}x{a.heads} d{a.d_model} | {weights_mb:.0f} | {load:.0f} | {detect:.0f} | "
          f"{(detect - load) / weights_mb:.2f} |")


if __name__ == "__main__":
    main()
