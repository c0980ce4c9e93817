"""Attribution patching: a first-order estimate of every head's ablation effect from one forward + backward.

For a metric M (mean S or mean LD_neg over items, both linear in the slot log-probs) and an
ablation replacing head h's z by z', the estimate is

    delta_M(h) ~= sum_{units, positions, d_head} dM/dz[..., h, :] * (z' - z)[..., h, :]

with z' = 0 (zero ablation) or the dataset mean of z (mean ablation). Per batch of units this
takes one forward with every layer's hook_z captured and ONE backward for all metrics
(``torch.autograd.grad``, no parameter gradients stored): the units (sequences) of a batch do not
interact, so dM/dz of unit u only involves u's own slots, and where every metric weighs a unit's slots
in proportion (S and LD_neg both weigh a negated prompt's target/foil as -/+ and +/-, a control
prompt's as +/- and 0/0), one backward of a base weighting gives every metric's gradient as a per-unit
factor times it (:func:`shared_weighting`; otherwise one backward per metric). Units no metric weighs
(the affirmative prompts) have zero gradient and are left out of that forward. It is an approximation
(AtP; see arXiv 2403.00745 for its false negatives); the pass reports its Spearman correlation with the
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


def shared_weighting(term_unit: torch.Tensor, term_slot: torch.Tensor, n_units: int,
                     weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Factor metric weights per unit: weights [M, n_slots] -> (base [n_slots], factor [M, n_units]) with
    weights[m, s] == factor[m, u] * base[s] for every slot s scored by unit u (term_unit/term_slot [K]),
    or None when a slot is scored by two units or some unit's M weight vectors are not proportional.

    Then d(sum_s weights[m, s] lp_s)/dz_u = factor[m, u] * d(sum_s base[s] lp_s)/dz_u, because unit u's
    activations z_u reach only u's own slots."""
    m, n_slots = weights.shape
    owner = torch.full((n_slots,), -1, dtype=torch.long)
    for u, s in zip(term_unit.tolist(), term_slot.tolist()):
        if int(owner[s]) not in (-1, u):
            return None
        owner[s] = u
    base = torch.zeros(n_slots, dtype=weights.dtype)
    factor = torch.zeros(m, n_units, dtype=weights.dtype)
    for u in range(n_units):
        slots = (owner == u).nonzero().flatten()
        w = weights[:, slots]  # [M, |S_u|]
        if len(slots) == 0 or not bool(w.any()):
            continue
        v = w[int(w.abs().sum(1).argmax())]
        f = (w @ v) / (v @ v)
        if not torch.allclose(f[:, None] * v, w, rtol=1e-6, atol=0.0):
            return None
        base[slots], factor[:, u] = v, f
    return base, factor


def attribution_estimates(runner: AblationRunner, kinds: Sequence[str], shared_backward: bool = True) -> dict[str, dict[str, torch.Tensor]]:
    """{metric: {kind: estimated delta [n_layers, n_heads]}} for metrics ATP_METRICS (needs runner.clean() first).

    shared_backward: one backward for every metric where :func:`shared_weighting` applies (False: one per
    metric, the reference path; benchmarks/bench_cpu_paths.py compares the two)."""
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
        shared = (shared_weighting(enc.term_unit.cpu(), enc.term_slot.cpu(), enc.n_units,
                                   torch.stack([weights[m] for m in ATP_METRICS]).cpu()) if shared_backward else None)
        run_enc = enc
        if shared is not None and not bool((weighted := shared[1].abs().sum(0) > 0).all()):
            # units no metric weighs (affirmative prompts) have zero gradient: leave them out of the forward
            if not bool(weighted.any()):
                continue  # nothing in this chunk moves a metric: its contribution is exactly 0
            run_enc = enc.select(weighted.to(enc.tokens.device))
            shared = (shared[0], shared[1][:, weighted])
        with torch.enable_grad():
            if runner.fast:
                with skip_prefix(bridge, 0) as head:
                    out_h = bridge.run_with_hooks(run_enc.tokens, fwd_hooks=hooks)
                    lp = runner.score(out_h, c, 1, head, enc=run_enc)[0]
            else:
                lp = runner.score(bridge.run_with_hooks(run_enc.tokens, fwd_hooks=hooks), c, 1, None, enc=run_enc)[0]
            zs = [store[L] for L in range(n_layers)]
            if shared is not None:
                base, factor = shared[0].to(lp.device), shared[1].to(lp.device)
                common = torch.autograd.grad((lp * base).sum(), zs)  # per layer [B', T', H, dh] (weighted units only)
            else:
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
                if shared is not None:
                    per_unit = (common[L].detach() * delta).sum(dim=(1, 3))  # [B, H]
                    for i, m in enumerate(ATP_METRICS):
                        out[m][k][L] += (factor[i].to(per_unit.dtype) @ per_unit).double().cpu()
                else:
                    for m in ATP_METRICS:
                        out[m][k][L] += (grads[m][L].detach() * delta).sum(dim=(0, 1, 3)).double().cpu()
    return out
