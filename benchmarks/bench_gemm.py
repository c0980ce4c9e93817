"""Benchmark: float32 GEMM throughput on this CPU, PyTorch's default (MKL) vs oneDNN, side by side.

Why headwiki.kernels routes inference GEMMs through oneDNN: on AMD CPUs MKL's sgemm takes a slower
path. Shapes are the GEMMs of a batched GPT-2-small detector pass (16 x 65 tokens) and of a batch-1
forward (65 tokens). Prints GFLOP/s per shape: MKL, oneDNN with a weight packed once (an upper bound),
and oneDNN repacking the weight on every call (what ``HEADWIKI_ONEDNN=1`` runs: correct under in-place
weight edits), the ratio repacked / MKL, plus the largest |difference| from a float64 reference.

Run: ``python benchmarks/bench_gemm.py [--repeats 30]``
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import torch

from headwiki.kernels import onednn_linear, pack_weight

SHAPES = [  # (rows, d_in, d_out)
    (1040, 768, 768), (1040, 768, 3072), (1040, 3072, 768), (65, 768, 768), (65, 768, 3072), (65, 3072, 768),
]


def _seconds(fn: Callable[[], torch.Tensor], repeats: int) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    print(f"{platform.machine()} {platform.processor()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print("| rows x d_in x d_out | MKL GFLOP/s | oneDNN packed once GFLOP/s | oneDNN repacked per call GFLOP/s "
          "| repacked / MKL speed | max err MKL | max err oneDNN |")
    print("|---|---|---|---|---|---|---|")
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for rows, d_in, d_out in SHAPES:
            x, w, b = torch.randn(rows, d_in, generator=gen), torch.randn(d_out, d_in, generator=gen), torch.randn(d_out, generator=gen)
            packed = pack_weight(w)
            flops = 2 * rows * d_in * d_out
            mkl = _seconds(lambda: torch.nn.functional.linear(x, w, b), args.repeats)
            dnn = _seconds(lambda: onednn_linear(x, packed, b), args.repeats)
            repacked = _seconds(lambda: onednn_linear(x, pack_weight(w), b), args.repeats)
            ref = torch.nn.functional.linear(x.double(), w.double(), b.double())
            err_mkl = (torch.nn.functional.linear(x, w, b).double() - ref).abs().max().item()
            err_dnn = (onednn_linear(x, packed, b).double() - ref).abs().max().item()
            print(f"| {rows} x {d_in} x {d_out} | {flops / mkl / 1e9:.0f} | {flops / dnn / 1e9:.0f} | "
                  f"{flops / repacked / 1e9:.0f} | {mkl / repacked:.2f}x | {err_mkl:.1e} | {err_dnn:.1e} |")


if __name__ == "__main__":
    main()
