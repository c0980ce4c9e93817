"""KV groups: which key/value head each query head reads (grouped-query attention).

Under grouped-query attention (n_kv_heads < n_heads) consecutive query heads share one KV head: query head h
reads KV head h // (n_heads / n_kv_heads) (the HF / TransformerLens ``repeat_interleave`` layout). SmolLM2-135M
has 9 query heads and 3 KV heads per layer: heads 0-2 read KV head 0, 3-5 KV head 1, 6-8 KV head 2. Without
GQA every head is its own group. Heads of one group share their keys and values, so their patterns differ only
through their queries (an induction head can share its KV head with a BOS-only head).

Not a detector: a fact of the architecture, written by the detector pass beside the scores and read by the wiki
(a head page lists the other query heads of its group). Base layer: torch-free, no pass imports.
"""

from __future__ import annotations

from headwiki.errors import HeadwikiError
from headwiki.spec import Metric, metric

METRIC = metric(Metric(
    "kv_group", "KV group", "label", "label", "",
    "the key/value head this query head reads under grouped-query attention: head // (n_heads / n_kv_heads); "
    "query heads of one layer with the same value share keys and values",
    data="model config (n_heads, n_kv_heads)", dtype="BIGINT", order=30,
))


def kv_groups(n_layers: int, n_heads: int, n_kv_heads: int) -> list[list[int]]:
    """[n_layers][n_heads]: the KV head each query head reads."""
    if n_kv_heads < 1 or n_heads % n_kv_heads:
        raise HeadwikiError(f"model has {n_heads} query heads and {n_kv_heads} KV heads: the KV heads must divide the query heads")
    size = n_heads // n_kv_heads
    return [[head // size for head in range(n_heads)] for _ in range(n_layers)]
