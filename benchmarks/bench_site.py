"""Render-time benchmark: a 24-layer x 16-head (384-head) model.

TIMING RUN ONLY. By default the database is SYNTHETIC (benchmarks/synthetic_db.py: random values shaped like the
passes' output, including 2 ablations x N negation items of per-item effects), so it measures the renderer,
not any model. `--db PATH` times an existing database instead.

    python benchmarks/bench_site.py [--items 200] [--db PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from synthetic_db import write_synthetic_db
from headwiki.wiki.render import render_site


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None, help="time this database instead of a synthetic 24x16 one")
    parser.add_argument("--items", type=int, default=200, help="synthetic negation items per ablation")
    parser.add_argument("--out", default=None, help="site directory (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "timing-24x16.duckdb"
        if not args.db:
            t0 = time.perf_counter()
            write_synthetic_db(db, "synthetic-timing-24x16", n_layers=24, n_heads=16, negation=True,
                               n_items=args.items, seq=32, seed=0)
            print(f"synthetic 24x16 database written in {time.perf_counter() - t0:.1f} s (not timed below)")
        out = Path(args.out) if args.out else Path(tmp) / "site"
        t0 = time.perf_counter()
        result = render_site(db, out)
        seconds = time.perf_counter() - t0
        head_pages = list(out.rglob("heads/*.html"))
        sizes = sorted(p.stat().st_size for p in head_pages)
        print(f"render: {seconds:.1f} s for {result.n_pages} pages ({result.n_heads} heads, {result.n_models} model(s)); "
              f"{result.total_bytes / 1e6:.1f} MB total")
        print(f"head pages: {len(sizes)}, median {sizes[len(sizes) // 2] / 1e3:.1f} KB, max {sizes[-1] / 1e3:.1f} KB")


if __name__ == "__main__":
    main()
