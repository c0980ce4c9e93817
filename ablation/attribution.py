"""Attribution patching: a first-order estimate of every head's ablation effect from one forward + backward.

For a metric M (mean S or mean LD_neg over items, both linear in the slot log-probs) and an
ablation replacing head h's z by z', the estimate is

    delta_M(h) ~= sum_{units, positions, d_head} dM/dz[..., h, :] * (z' - z)[..., h, :]

with z' = 0 (zero ablation) or the dataset mean of z (mean ablation). Per batch of units this
takes one forward with every layer's hook_z captured and one backward per metric
(``torch.autograd.grad``, no parameter gradients stored). It is an approximation (AtP; see
arXiv 2403.00745 for its false negatives); the pass reports its Spearman correlation with the
exact sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from headwiki.ablation.effects import EFFECT_SPECS
from headwiki.ablation.scoring import metric_coefficients
from headwiki.ablation.sweep import AblationRunner, skip_prefix
from headwiki.hooks import z_hook
from headwiki.spec import Metric
from headwiki.spec import metric as spec_metric

ATP_METRICS: tuple[str, ...] = ("sens", "neg_ld")
# the declaration of each `<metric>_delta_atp_<ablation>` column (an estimate of the exact <metric>_delta_<ablation>)
ATP_SPECS: dict[str, Metric] = {
    m: spec_metric(Metric(
        f"{EFFECT_SPECS[m].name}_atp", f"{EFFECT_SPECS[m].label} (attribution estimate)", "attribution", "estimate",
        EFFECT_SPECS[m].unit, f"attribution-patching estimate (gradient x activation change, one forward + backward) of "
        f"{EFFECT_SPECS[m].name}", data="negation items", direction="signed", per_ablation=True, order=EFFECT_SPECS[m].order))
    for m in ATP_METRICS
}
ATP_KINDS: tuple[str, ...] = ("zero", "mean")  # ablations with a deterministic replacement to linearise around


def attribution_estimates(runner: AblationRunner, kinds: Sequence[str]) -> dict[str, dict[str, torch.Tensor]]:
    """{metric: {kind: estimated delta [n_layers, n_heads]}} for metrics ATP_METRICS (needs runner.clean() first)."""
    assert runner.clean_run is not None, "call runner.clean() first"
    bridge = runner.bridge
    n_layers, n_heads = runner.n_layers, runner.n_heads
    z_mean = runner.clean_run.z_mean
    weights = {m: metric_coefficients(runner.enc.n_items, m).to(z_mean.device) for m in ATP_METRICS}
    out = {m: {k: torch.zeros(n_layers, n_heads, dtype=torch.float64) for k in kinds} for m in ATP_METRICS}
    for c, enc in enumerate(runner.chunks):
        store: dict[int, torch.Tensor] = {}

        def capture(layer: int) -> Any:
            def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:
                if not z.requires_grad:  # frozen parameters: make the first captured z a graph leaf
                    z = z.detach().requires_grad_(True)
                store[layer] = z
                return z

            return hook

        hooks = [(z_hook(L), capture(L)) for L in range(n_layers)]
        with torch.enable_grad():
            if runner.fast:
                with skip_prefix(bridge, 0) as head:
                    out_h = bridge.run_with_hooks(enc.tokens, fwd_hooks=hooks)
                    lp = runner.score(out_h, c, 1, head)[0]
            else:
                lp = runner.score(bridge.run_with_hooks(enc.tokens, fwd_hooks=hooks), c, 1, None)[0]
            zs = [store[L] for L in range(n_layers)]
            grads = {}
            for i, m in enumerate(ATP_METRICS):
                metric = (lp * weights[m]).sum()
                grads[m] = torch.autograd.grad(metric, zs, retain_graph=i < len(ATP_METRICS) - 1)
        for L in range(n_layers):
            z = zs[L].detach()
            for k in kinds:
                if k == "zero":
                    delta = -z
                elif k == "mean":
                    delta = z_mean[L][None, None] - z
                else:
                    raise ValueError(f"no attribution estimate for ablation {k!r}")
                for m in ATP_METRICS:
                    out[m][k][L] += (grads[m][L].detach() * delta).sum(dim=(0, 1, 3)).double().cpu()
    return out
