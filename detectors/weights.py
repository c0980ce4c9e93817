"""Weight detectors: head scores read from the weights alone (no forward pass, no sequences).

A :class:`WeightDetector` scores every head from :class:`OVWeights` — the model's OV circuits in token space
(headwiki.ov_circuit: embedding rows as the attention LayerNorm sees them, gains folded into W_V and W_U, W_V
expanded to query heads under grouped-query attention) — and returns ``{column: [n_layers, n_heads]}`` for each
declared metric, with ``<m>_lo`` / ``<m>_hi`` beside it. The detector pass (headwiki.detectors.run) runs every
weight detector on the model and on the random-init control model of the same shapes (the ``<metric>_control``
a role's CI lower bound must beat, as for the pattern detectors), and writes the same columns.

A score computed from weights alone is deterministic: there is no sampling to bootstrap. Such a metric
declares ``ci=True`` only when it has an interval of its own (the successor score: a Wilson interval over its
ordinal pairs); otherwise ``<m>_lo = <m>_hi = <m>`` (a zero-width interval, said in its description) and the
role's evidence against chance is the random-init control: the same score on a random-initialized model of the
same shapes, whose distribution over heads is recorded in the run's docs.

Also here: the OV profile of each head (table ``head_ov_profile``: for a few input tokens, the tokens whose
logits the head's OV output raises and lowers most), written by the detect pass in its transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import torch

from headwiki.kv_group import kv_groups
from headwiki.ordinals import OrdinalRun, ordinal_runs
from headwiki.ov_circuit import Norm, fold_gain, normalize_rows, ov_logits, token_gram, top_tokens, unembed
from headwiki.spec import SPEC, Metric

Embedding = Literal["raw", "effective"]
# The effective embedding by default: with the raw W_E, SmolLM2-135M's OV circuits are dominated by the direction all
# token embeddings share (124 heads score >= 0.5 and 66 <= -0.5, many at |0.999|: nearly rank-one circuits whose one
# large eigenvalue sets the sign); after the first MLP 56 and 44 do, top |score| 0.97-0.98 (README). McDougall et al.
# 2023 and Gould et al. 2024 read OV circuits through the effective embedding for the same reason.
EMBEDDING_DEFAULT: Embedding = "effective"


@dataclass
class OVWeights:
    """A model's OV circuits in token space (float64, CPU).

    E [d_vocab, d_model]: embedding rows normalized as an attention LayerNorm would (no gain); U [d_model, d_vocab]:
    unembedding with the final LayerNorm gain folded in; W_V [L, H, d_model, d_head] per QUERY head with each
    layer's attention-LayerNorm gain folded in; W_O [L, H, d_head, d_model]; G = U E [d_model, d_model] (lazy)."""

    E: torch.Tensor
    U: torch.Tensor
    W_V: torch.Tensor
    W_O: torch.Tensor
    norm: Norm
    embedding: Embedding
    _G: torch.Tensor | None = field(default=None, repr=False)

    @property
    def G(self) -> torch.Tensor:
        if self._G is None:
            self._G = token_gram(self.E, self.U)
        return self._G


def _gain(module: Any) -> torch.Tensor | None:
    """The gain (weight) of a LayerNorm / RMSNorm module of the bridge, or None."""
    for name, p in module.named_parameters():
        if name.split(".")[-1] == "weight":
            return p.detach().double().cpu()
    return None


@torch.no_grad()
def effective_embedding(bridge: Any, chunk: int = 4096) -> torch.Tensor:
    """W_E + MLP_0(LN2_0(W_E)): each token's embedding after the first MLP (attention layer 0 left out), the
    effective embedding of McDougall et al. 2023. -> [d_vocab, d_model] float64 on CPU."""
    W_E = bridge.W_E.detach()
    block = bridge.blocks[0]
    out = []
    for start in range(0, W_E.shape[0], chunk):
        x = W_E[start:start + chunk][None]
        out.append((x + block.mlp(block.ln2(x)))[0].float().cpu())
    return torch.cat(out).double()


@torch.no_grad()
def ov_weights(bridge: Any, embedding: Embedding = EMBEDDING_DEFAULT) -> OVWeights:
    """Read the OV circuits of `bridge` (a TransformerBridge) in token space.

    Folds: each layer's attention-LayerNorm gain into W_V, the final LayerNorm gain (and LN centring) into W_U,
    the LayerNorm normalization (centring for LN, 1/RMS) into the embedding rows. Left out: LayerNorm biases,
    b_V, b_O (the same vector for every token). GQA: bridge.W_V is [L, n_kv_heads, d_model, d_head]; each query
    head gets its KV head's W_V (headwiki.kv_group)."""
    norm_type = str(getattr(bridge.cfg, "normalization_type", "LN") or "none")
    norm: Norm = "RMS" if norm_type.startswith("RMS") else ("LN" if norm_type.startswith("LN") else "none")
    W_V = bridge.W_V.detach().double().cpu()
    W_O = bridge.W_O.detach().double().cpu()
    n_layers, n_heads = W_O.shape[:2]
    if W_V.shape[1] != n_heads:  # grouped-query attention: one W_V per KV head
        index = torch.tensor(kv_groups(n_layers, n_heads, W_V.shape[1])[0])
        W_V = W_V[:, index]
    gains = [_gain(bridge.blocks[layer].ln1) for layer in range(n_layers)]
    g = torch.stack(gains) if all(x is not None for x in gains) else None
    raw = effective_embedding(bridge) if embedding == "effective" else bridge.W_E.detach().double().cpu()
    return OVWeights(E=normalize_rows(raw, norm), U=unembed(bridge.W_U.detach().cpu(), _gain(bridge.ln_final), norm),
                     W_V=fold_gain(W_V, g), W_O=W_O, norm=norm, embedding=embedding)


@dataclass(frozen=True)
class WeightContext:
    """What a weight detector may need besides the weights: the ordinal runs of the tokenizer and seeded
    random-token runs of the same lengths (the successor score's random-token control)."""

    runs: list[OrdinalRun]
    random_runs: list[OrdinalRun]


WeightFn = Callable[[OVWeights, WeightContext], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class WeightDetector:
    """A head score from the weights: fn(weights, context) -> {column: [n_layers, n_heads]} for each declared
    metric (and its _lo/_hi when the metric declares a CI). control: the metrics a role reads (they are also
    computed on the random-init control model)."""

    name: str
    version: str
    fn: WeightFn
    metrics: tuple[Metric, ...]
    ordinal: bool = False  # scored on the ordinal runs: n = their (member, successor) pairs, data names the runs


WEIGHT_DETECTORS: dict[str, WeightDetector] = {}


def register_weights(detector: WeightDetector) -> WeightDetector:
    """Register a weight detector and declare its metrics (at import time of the module that computes it)."""
    if detector.name in WEIGHT_DETECTORS and WEIGHT_DETECTORS[detector.name] != detector:
        raise ValueError(f"a weight detector named {detector.name!r} is already registered")
    for m in detector.metrics:
        SPEC.add_metric(m)
    WEIGHT_DETECTORS[detector.name] = detector
    return detector


def weight_context(tokenizer: Any, ordinary: torch.Tensor, seed: int) -> WeightContext:
    """Ordinal runs of `tokenizer` and random-token runs of the same lengths (drawn from `ordinary` ids [m])."""
    runs = ordinal_runs(lambda s: list(tokenizer.encode(s, add_special_tokens=False)))
    gen = torch.Generator().manual_seed(seed + 7)
    random_runs = []
    for r in runs:
        ids = ordinary[torch.randperm(len(ordinary), generator=gen)[:len(r.ids)]]
        random_runs.append(OrdinalRun(f"random ({r.name})", tuple(str(int(i)) for i in ids), tuple(int(i) for i in ids)))
    return WeightContext(runs=runs, random_runs=random_runs)


def weight_scores(weights: OVWeights, context: WeightContext) -> dict[str, torch.Tensor]:
    """Every weight detector's columns {column: [n_layers, n_heads] float64}."""
    import headwiki.detectors.copying  # noqa: F401  (the built-in weight detectors register on import)
    import headwiki.detectors.successor  # noqa: F401

    out: dict[str, torch.Tensor] = {}
    for det in WEIGHT_DETECTORS.values():
        out.update({k: v.double() for k, v in det.fn(weights, context).items()})
    return out


def weight_metrics() -> list[Metric]:
    """The declarations of every weight detector's metrics."""
    import headwiki.detectors.copying  # noqa: F401
    import headwiki.detectors.successor  # noqa: F401

    return [m for d in WEIGHT_DETECTORS.values() for m in d.metrics]


# --- OV profile (head pages) ---------------------------------------------------------------------------------
PROFILE_WORDS = (" the", " cat", " Monday", " 7", " Paris", " John")
PROFILE_INPUTS = 4
PROFILE_TOP = 5


def profile_inputs(tokenizer: Any, ordinary: torch.Tensor, n: int = PROFILE_INPUTS) -> list[int]:
    """A few input token ids for the OV profile: common single-token words when the tokenizer has them, else the
    first ordinary tokens."""
    ids: list[int] = []
    for w in PROFILE_WORDS:
        enc = list(tokenizer.encode(w, add_special_tokens=False))
        if len(enc) == 1 and int(enc[0]) in set(ordinary.tolist()) and int(enc[0]) not in ids:
            ids.append(int(enc[0]))
    for i in ordinary.tolist():
        if len(ids) >= n:
            break
        if int(i) not in ids:
            ids.append(int(i))
    return ids[:n]


def ov_profile_frame(model_id: str, weights: OVWeights, tokenizer: Any, inputs: list[int], k: int = PROFILE_TOP) -> pd.DataFrame:
    """head_ov_profile rows: for each head and input token, the k tokens its OV output boosts and suppresses most
    (direct logit effect through the unembedding, as a z-score over the vocabulary)."""
    rows = weights.E[torch.tensor(inputs)]
    logits = ov_logits(rows, weights.W_V, weights.W_O, weights.U)  # [L, H, n_in, V]
    up_v, up_i, down_v, down_i = top_tokens(logits, k)
    names = {i: tokenizer.decode([i]) for i in set(inputs) | set(up_i.unique().tolist()) | set(down_i.unique().tolist())}
    out = []
    n_layers, n_heads = logits.shape[:2]
    for layer in range(n_layers):
        for head in range(n_heads):
            for n, tid in enumerate(inputs):
                for direction, vals, idx in (("boosted", up_v, up_i), ("suppressed", down_v, down_i)):
                    for rank in range(k):
                        t = int(idx[layer, head, n, rank])
                        out.append((model_id, layer, head, n, names[tid], direction, rank + 1, names[t],
                                    float(vals[layer, head, n, rank])))
    return pd.DataFrame(out, columns=["model_id", "layer", "head", "input_rank", "input_token", "direction", "rank",
                                      "token", "logit"])


def weight_metric_names() -> set[str]:
    """The names of every weight detector's metrics."""
    return {m.name for m in weight_metrics()}


def weight_controls(control_bridge: Any, context: WeightContext) -> dict[str, torch.Tensor]:
    """The role metrics' weight scores on the random-init control model: {metric: [n_layers, n_heads]} (float64)."""
    from headwiki.detectors.roles import control_metrics

    wanted = set(control_metrics()) & weight_metric_names()
    cols = weight_scores(ov_weights(control_bridge), context)
    return {m: cols[m] for m in wanted}


def add_weight_columns(frame: pd.DataFrame, cols: dict[str, torch.Tensor], context: WeightContext,
                       controls: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    """Put the weight detectors' columns into `frame` (one row per head, (layer, head) order); return their docs
    (each metric's description gains the random-init control's range over all heads and the ordinal data used)."""
    from headwiki.ordinals import n_pairs

    docs: dict[str, dict[str, Any]] = {}
    for name, values in cols.items():
        frame[name] = values.reshape(-1).double().numpy()
    runs = "; ".join(f"{r.name}: {' '.join(r.words)}" for r in context.runs) or "none found in this tokenizer"
    for det, m in ((d, m) for d in WEIGHT_DETECTORS.values() for m in d.metrics):
        if m.name not in cols:
            continue
        extra = ""
        if m.name in controls:
            c = controls[m.name].double()
            extra = f" [random-init control over all {c.numel()} heads: min {c.min():.3f}, max {c.max():.3f}]"
        data = m.data
        n = 1
        if det.ordinal:
            n = n_pairs(context.runs)
            data = f"{m.data}; runs used: {runs}"
        docs[m.name] = {"description": m.description + extra, "data": data, "n": n, "spec": m}
    return docs
