"""Benchmark: headwiki's batched detector pass vs TransformerLens's detect_head, identical sequences.

Model: random-init GPT-2-small shape (12 layers x 12 heads, d_model 768, vocab 50257, built from a
config; no download) with a word-level tokenizer so the decoded sequences re-tokenize exactly.
Sequences: headwiki's seeded repeat sequences [BOS, x_1..x_L, x_1..x_L].
Peer: ``detect_head(bridge, strings, name)`` for previous_token_head, duplicate_token_head and
induction_head (it runs one prompt at a time, caching every hook, looping over heads in Python).
Ours: ONE batched forward per batch capturing only hook_pattern; all three TL-compatible scores for
every head from the same patterns. Values must agree to 1e-5; the floor is a >= 10x speed-up.
The peer runs on a stock bridge (``TransformerBridge.boot_transformers``, as a TL user gets it); ours on
headwiki's loader, which swaps in faster kernels for the same functions (``headwiki.kernels``: fused
tanh-GELU; oneDNN GEMMs with packed weights on the CPU).
Context columns, to say where the speed-up comes from: a bare batched forward of the HF model body on
the same tokens (no hooks, no unembedding) with the stock and with headwiki's kernels
(``TL s / stock bare s`` is the most an exact pass on HF's stock kernels could gain over the peer), and
the peer itself run on headwiki's kernels (``TL on headwiki kernels s``: the part that is batching and
one pass rather than kernels).

Run: ``python benchmarks/bench_detectors.py [--n-seqs 16] [--seq-len 20] [--batch-size 16] [--repeats 3]``
(each method timed ``repeats`` times, interleaved; medians reported, every sample kept in the JSON).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

FLOOR = 10.0
TOL = 1e-5


def _three_head_registry() -> Any:
    """The three TL-compatible detectors, all on the repeat sequences (the sequences TL is given)."""
    from headwiki.detectors.peer import tl_scores
    from headwiki.detectors.registry import Detector, Registry

    reg = Registry()
    for head_name in ("previous_token_head", "duplicate_token_head", "induction_head"):
        reg.register(Detector(
            name=head_name, version="1", needs="repeat", description=f"TL-compatible {head_name}",
            fn=lambda p, t, m, h=head_name: tl_scores(p, t, h),  # type: ignore[misc]
        ))
    return reg


def _stock_bridge(model_dir: str | Path, device: str) -> Any:
    """The peer's model: a TransformerBridge booted the way a TransformerLens user boots it."""
    import warnings

    from transformer_lens.model_bridge import TransformerBridge

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers(str(model_dir), device=device)
    bridge.eval()
    return bridge


def _bare_forward_s(bridge: Any, tokens: torch.Tensor, batch_size: int, device: str) -> float:
    """Seconds for batched forwards of the bridge's HF model body alone (no hooks, no unembedding)."""
    body = getattr(bridge.original_model, "transformer", None) or bridge.original_model.base_model
    with torch.inference_mode():
        body(tokens[:2].to(device))
        start = time.perf_counter()
        for batch in tokens.split(batch_size):
            body(batch.to(device))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start


def run_benchmark(
    n_seqs: int = 16, seq_len: int = 20, batch_size: int = 16, seed: int = 0, device: str = "cpu",
    model_dir: str | Path | None = None, repeats: int = 3,
) -> dict[str, Any]:
    """Time both ways on the same sequences ``repeats`` times; return median timings, their ratio and
    the max |difference|."""
    from transformer_lens.head_detector import detect_head

    from headwiki.detectors.data import ordinary_token_ids, repeat_sequences
    from headwiki.detectors.registry import BatchMeta
    from headwiki.detectors.scoring import score_inputs
    from headwiki.models import load_model
    from headwiki.random_models import write_random_model

    with tempfile.TemporaryDirectory() as tmp:
        if model_dir is None:
            model_dir = write_random_model(Path(tmp) / "gpt2-small-random", arch="gpt2", n_layers=12, n_heads=12,
                                           d_model=768, vocab_size=50257, n_ctx=1024, seed=seed)
        loaded = load_model(str(model_dir), device=device)
        bridge, info = loaded.bridge, loaded.info
        stock = _stock_bridge(model_dir, device)
        tok = bridge.tokenizer
        vocab = ordinary_token_ids(tok, loaded.info.d_vocab)
        tokens = repeat_sequences(vocab, n_seqs, seq_len, tok.bos_token_id, seed)
        strings = [tok.decode(row[1:].tolist()) for row in tokens]
        assert torch.equal(torch.cat([bridge.to_tokens(s).cpu() for s in strings]), tokens), "sequences must round-trip"
        reg = _three_head_registry()

        # warm-up, each at the shapes it then runs (ours: one full batch; TL: batch 1, both bridges)
        score_inputs(bridge, {"repeat": tokens[:batch_size]}, reg, BatchMeta(seq_len), batch_size)
        detect_head(stock, strings[:1], "induction_head")
        detect_head(bridge, strings[:1], "induction_head")

        times: dict[str, list[float]] = {"ours": [], "theirs": [], "theirs_fast_kernels": [], "bare_stock": [], "bare_fast": []}
        for _ in range(repeats):  # interleaved, so slow phases of a shared machine hit every method alike
            start = time.perf_counter()
            per_seq = score_inputs(bridge, {"repeat": tokens}, reg, BatchMeta(seq_len), batch_size)
            ours = {name: per_seq[name].double().mean(0) for name in per_seq}
            times["ours"].append(time.perf_counter() - start)
            times["bare_stock"].append(_bare_forward_s(stock, tokens, batch_size, device))
            times["bare_fast"].append(_bare_forward_s(bridge, tokens, batch_size, device))
            start = time.perf_counter()
            theirs = {name: detect_head(stock, strings, name).double() for name in ours}
            times["theirs"].append(time.perf_counter() - start)
            start = time.perf_counter()
            theirs_fast = {name: detect_head(bridge, strings, name).double() for name in ours}
            times["theirs_fast_kernels"].append(time.perf_counter() - start)
        ours_s, theirs_s, theirs_fast_s, bare_s, bare_fast_s = (
            statistics.median(times[k]) for k in ("ours", "theirs", "theirs_fast_kernels", "bare_stock", "bare_fast"))

    max_diff = max(max((ours[n] - theirs[n]).abs().max().item(), (ours[n] - theirs_fast[n]).abs().max().item()) for n in ours)
    return {
        "model": f"random-init GPT-2 {info.n_layers}x{info.n_heads}, d_model {info.d_model}, vocab {info.d_vocab}",
        "device": device, "n_seqs": n_seqs, "seq_tokens": 2 * seq_len + 1, "batch_size": batch_size,
        "torch_threads": torch.get_num_threads(),
        "headwiki_s": round(ours_s, 3), "transformer_lens_s": round(theirs_s, 3),
        "speedup": round(theirs_s / ours_s, 1), "max_abs_diff": max_diff,
        "repeats": repeats, "samples_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "bare_forward_stock_s": round(bare_s, 3), "bare_forward_fast_s": round(bare_fast_s, 3),
        "stock_kernel_ceiling": round(theirs_s / bare_s, 1),
        "transformer_lens_fast_kernels_s": round(theirs_fast_s, 3), "speedup_same_kernels": round(theirs_fast_s / ours_s, 1),
        "values_equal": max_diff <= TOL, "meets_floor": theirs_s / ours_s >= FLOOR,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-seqs", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timings per method (medians are reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_benchmark(args.n_seqs, args.seq_len, args.batch_size, device=args.device, repeats=args.repeats)
    print(json.dumps(result, indent=2))
    print(f"medians of {result['repeats']}: headwiki {result['headwiki_s']} s vs TransformerLens detect_head {result['transformer_lens_s']} s: "
          f"{result['speedup']}x faster (floor {FLOOR}x), max |diff| {result['max_abs_diff']:.1e}; "
          f"bare HF body forward {result['bare_forward_stock_s']} s on stock kernels, "
          f"{result['bare_forward_fast_s']} s on headwiki's (stock-kernel ceiling {result['stock_kernel_ceiling']}x); "
          f"TL on headwiki's kernels {result['transformer_lens_fast_kernels_s']} s ({result['speedup_same_kernels']}x)")
    if not (result["values_equal"] and result["meets_floor"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
