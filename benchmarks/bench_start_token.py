"""How much the start token (`--bos`) changes a model's negation baselines: the same English items, the same
model, only the token at position 0 differs (issue 23: SmolLM2's sensitivity moved ninefold between
``<|im_start|>`` and ``<|endoftext|>``).

    python benchmarks/bench_start_token.py [--model PATH] [--bos auto --bos '<|endoftext|>'] [--max-items N]

For each choice: affirmative / negated / control accuracy with Wilson 95% CIs and the negation sensitivity S with its
cluster-bootstrap CI (the negation pass's clean numbers, computed by the sandbox engine that reuses it). Writes
benchmarks/results/start-token-<model>.json/.md. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GGUF = REPO / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_GGUF))
    parser.add_argument("--bos", action="append", default=None, help="start-token choices (default: auto and <|endoftext|>)")
    parser.add_argument("--dataset", default="english")
    parser.add_argument("--max-items", type=int, default=None)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()

    from headwiki.ablation.sandbox import Sandbox
    from headwiki.models import load_model

    rows = []
    for choice in args.bos or ["auto", "<|endoftext|>"]:
        started = time.perf_counter()
        loaded = load_model(args.model, device="cpu", bos=choice)
        box = Sandbox(loaded, args.dataset, max_items=args.max_items)
        acc = {c: {"accuracy": a.k / a.n, "lo": a.lo, "hi": a.hi, "n": a.n} for c, a in box.clean_accuracy.items()}
        s, s_lo, s_hi = box.clean_sensitivity
        rows.append({"choice": choice, "token": loaded.start.text, "id": loaded.start.id, "why": loaded.start.why,
                     "accuracy": acc, "sensitivity": s, "sensitivity_lo": s_lo, "sensitivity_hi": s_hi,
                     "seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps(rows[-1]), flush=True)
        del box, loaded
    name = Path(args.model).stem.split(".")[0].lower()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"model": args.model, "dataset": args.dataset, "max_items": args.max_items, "rows": rows}
    (out / f"start-token-{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"# Start token vs negation baselines: {Path(args.model).name}, {args.dataset} items",
             "", "`python benchmarks/bench_start_token.py` (clean model; accuracies with Wilson 95% CIs, S with a cluster-bootstrap CI)",
             "", "| --bos | token (id) | affirmative | negated | control | sensitivity S |", "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r['accuracy'][c]['accuracy']:.3f} [{r['accuracy'][c]['lo']:.3f}, {r['accuracy'][c]['hi']:.3f}]"
                 for c in ("affirmative", "negated", "control")]
        lines.append(f"| `{r['choice']}` | `{r['token']}` ({r['id']}) | {' | '.join(cells)} | "
                     f"{r['sensitivity']:.3f} [{r['sensitivity_lo']:.3f}, {r['sensitivity_hi']:.3f}] |")
    (out / f"start-token-{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
