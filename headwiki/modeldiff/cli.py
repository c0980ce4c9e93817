"""`headwiki diff A B --db D` (application layer)."""

from __future__ import annotations

import click
import pandas as pd

from headwiki.cli_options import db_option, emit, format_options


@click.command(name="diff")
@click.argument("model_a")
@click.argument("model_b")
@db_option
@click.option("--device", default="auto", show_default=True, help="auto (cuda when available), cpu, cuda, cuda:N")
@click.option("--dtype", default="float32", show_default=True, help="float32 | bfloat16 | float16")
@click.option("--bos", default="auto", show_default=True, help="start token choice (as for --model commands)")
@click.option("--max-len", type=click.IntRange(min=2), default=128, show_default=True, help="tokens per passage (start token included)")
@click.option("--passages", "n_passages", type=click.IntRange(min=2), default=None, help="use the first N shipped passages  [default: all]")
@click.option("--top", type=click.IntRange(min=1), default=25, show_default=True, help="tokens kept where the models differ most")
@click.option("--patch-heads", type=click.IntRange(min=0), default=8, show_default=True,
              help="same structure: patch B's output of this many heads (largest |Δ DLA|) into A, one at a time, where B does better")
@click.option("--text", default=None, help="english | toy | hf:NAME | FILE  [default: toy for two toy-world models, else english]")
@format_options
def diff(model_a: str, model_b: str, db_path: str, device: str, dtype: str, bos: str, max_len: int, n_passages: int | None,
         top: int, patch_heads: int, text: str | None, fmt: str) -> None:
    """Compare MODEL_B with MODEL_A (B - A): per-token log-probs on the same text (English passages, or the toy corpus for
    two toy-world models) and, for two models of
    the same structure, per-head weight, activation and metric differences. Writes the diff tables to --db; the
    wiki (`headwiki site`) draws a diff page from them."""
    from headwiki.db.lock import check_db_target
    from headwiki.models import load_model
    from headwiki.modeldiff.run import diff_models

    check_db_target(db_path)
    a = load_model(model_a, device=device, dtype=dtype, bos=bos)
    b = load_model(model_b, device=device, dtype=dtype, bos=bos)
    r = diff_models(a, b, db_path, max_len=max_len, top_k=top, n_passages=n_passages, patch_heads=patch_heads,
                    text=text)
    summary = pd.DataFrame([{"model_a": r.model_a, "model_b": r.model_b, "tokens": r.n_tokens,
                             "mean_delta_logp": round(r.mean_delta, 4), "ci_lo": round(r.mean_delta_lo, 4),
                             "ci_hi": round(r.mean_delta_hi, 4), "same_structure": r.same_structure, "note": r.note}])
    emit(summary, fmt, "diff (B - A, nats per token)")
    if len(r.heads) and fmt == "table":
        emit(r.heads.sort_values("qk_rel", ascending=False).head(10).round(4), fmt, "heads whose weights moved most")
