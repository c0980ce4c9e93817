"""Behavioural signatures of roles on repeated random tokens, measured under head ablations.

Data: [BOS, x_1..x_L, x_1..x_L] (x distinct ordinary tokens, a seed of its own). Per sequence:

* in-context loss drop D = mean cross-entropy of predicting x_2..x_L in the first copy minus the
  same in the second copy (nats). Induction heads carry most of it (Olsson et al. 2022).
* induction score of a set of target heads: mean attention from each second-copy position to the
  position after the earlier copy of its token (the detector's definition), averaged over the
  target heads. Previous-token heads feed it by K-composition.

:class:`SignatureRunner` runs clean and ablated forwards (hook_z per query head, so GQA models
are ablated per query head), reusing the clean residual stream before the first ablated layer
(:func:`headwiki.ablation.sweep.skip_prefix`) and replicating the batch for several head sets per
forward. Ablations: zero (hook_z = 0), mean (hook_z = its mean over every non-BOS position of
the clean sequences), resample (hook_z = the same head's clean z on another sequence of the batch,
rolled by one, same positions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import torch
import torch.nn.functional as F

from headwiki.ablation.sweep import Spec, skip_prefix
from headwiki.detectors.induction import attention_at_offset, second_copy_positions
from headwiki.hooks import pattern_hook, require_hooks, resid_pre_hook, z_hook
from headwiki.progress import TaskHandle, log

SIGNATURE_ABLATIONS: tuple[str, ...] = ("zero", "mean", "resample")
FAST_PATH_TOL = 1e-3  # nats: prefix reuse must reproduce the plain forward's losses


def copy_positions(half_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions whose logits predict x_2..x_L in copy 1 (1..L-1) and in copy 2 (L+1..2L-1): two [L-1]."""
    first = torch.arange(1, half_len)
    return first, first + half_len


def copy_losses(log_probs_at: torch.Tensor, targets: torch.Tensor, half_len: int) -> torch.Tensor:
    """Per-sequence in-context loss drop.

    log_probs_at: [b, 2(L-1), vocab] log-probs at the copy-1 then copy-2 positions of
    :func:`copy_positions`; targets: [b, 2(L-1)] the tokens they predict -> D [b] (nats).
    """
    nll = -log_probs_at.gather(-1, targets[..., None])[..., 0]  # [b, 2(L-1)]
    m = half_len - 1
    return nll[:, :m].mean(1) - nll[:, m:].mean(1)


class SignatureRunner:
    """Clean and ablated runs on repeat sequences tokens [n, 2L+1]; `targets` = heads whose induction score is tracked."""

    def __init__(self, bridge: Any, tokens: torch.Tensor, half_len: int, targets: Sequence[tuple[int, int]],
                 max_rows: int = 64, prefix_reuse: bool = True) -> None:
        self.bridge = bridge
        self.n_layers = int(bridge.cfg.n_layers)
        self.n_heads = int(bridge.cfg.n_heads)
        names = [z_hook(L) for L in range(self.n_layers)] + [resid_pre_hook(L) for L in range(self.n_layers)]
        require_hooks(bridge, names + [pattern_hook(L) for L in range(self.n_layers)], "causal validation")
        device = next(bridge.parameters()).device
        self.tokens = tokens.to(device)
        self.n = int(tokens.shape[0])
        self.half_len = half_len
        self.targets = list(targets)
        first, second = copy_positions(half_len)
        self.positions = torch.cat([first, second]).to(device)
        self.target_tokens = self.tokens[:, self.positions + 1]  # [n, 2(L-1)]
        self.replicas = max(1, max_rows // self.n)
        self.fast = prefix_reuse
        self.fast_path_diff: float | None = None
        self.z: list[torch.Tensor] = []  # per layer [n, T, H, dh] (clean)
        self.z_mean: list[torch.Tensor] = []  # per layer [H, dh]
        self.resid: list[torch.Tensor] = []  # per layer [n, T, d_model] (clean, fast path only)
        self.clean_drop: torch.Tensor | None = None  # [n]
        self.clean_target_scores: torch.Tensor | None = None  # [n, n_targets]

    # ----- pieces -----------------------------------------------------------------------------
    def _drop(self, out: torch.Tensor, n_rep: int, head: Any) -> torch.Tensor:
        """D [n_rep, n] from a forward's output [n_rep*n, T, ...] (final resid with `head`, else logits)."""
        rows = []
        for r in range(n_rep):
            x = out[r * self.n:(r + 1) * self.n, self.positions]
            logits = head(x) if head is not None else x
            rows.append(copy_losses(F.log_softmax(logits.float(), dim=-1), self.target_tokens, self.half_len))
        return torch.stack(rows)

    def _score_hooks(self, n_rep: int, store: torch.Tensor) -> list[tuple[str, Callable[..., None]]]:
        """Pattern hooks writing each target head's per-sequence induction score into store [n_rep, n, n_targets]."""
        queries = second_copy_positions(self.half_len)
        by_layer: dict[int, list[tuple[int, int]]] = {}
        for j, (L, h) in enumerate(self.targets):
            by_layer.setdefault(L, []).append((j, h))

        def make(layer: int) -> Callable[..., None]:
            def hook(pattern: torch.Tensor, hook: Any) -> None:
                scores = attention_at_offset(pattern, queries, self.half_len - 1)  # [n_rep*n, H]
                for j, h in by_layer[layer]:
                    store[:, :, j] = scores[:, h].reshape(n_rep, self.n).float().cpu()
            return hook

        return [(pattern_hook(L), make(L)) for L in by_layer]

    def _value(self, kind: str, layer: int, head: int) -> torch.Tensor | float:
        if kind == "zero":
            return 0.0
        if kind == "mean":
            return self.z_mean[layer][head]
        if kind == "resample":
            return self.z[layer][:, :, head, :].roll(1, dims=0)
        raise ValueError(f"unknown ablation {kind!r}: use one of {SIGNATURE_ABLATIONS}")

    def _z_hook(self, layer: int, specs: Sequence[Spec]) -> Callable[..., torch.Tensor]:
        def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:
            for r, (replica, kind) in enumerate(specs):
                for h in replica.get(layer, ()):
                    z[r * self.n:(r + 1) * self.n, :, h, :] = self._value(kind, layer, h)
            return z
        return hook

    # ----- runs -------------------------------------------------------------------------------
    @torch.no_grad()
    def clean(self) -> None:
        """Clean run: D, target induction scores, z (for mean/resample) and resid_pre (prefix reuse) of every layer."""
        wanted = {z_hook(L) for L in range(self.n_layers)} | {resid_pre_hook(L) for L in range(self.n_layers)}
        store = torch.zeros(1, self.n, len(self.targets))
        with skip_prefix(self.bridge, 0) as head:
            with self.bridge.hooks(fwd_hooks=self._score_hooks(1, store)):
                out, cache = self.bridge.run_with_cache(self.tokens, names_filter=lambda name: name in wanted)
            drop = self._drop(out, 1, head)[0]
        plain = self._drop(self.bridge(self.tokens), 1, None)[0]
        self.fast_path_diff = float((plain - drop).abs().max())
        if self.fast_path_diff > FAST_PATH_TOL:
            log(f"[yellow]prefix reuse disagrees with a full forward by {self.fast_path_diff:.2e} nats; using full forwards")
            self.fast = False
        self.clean_drop = plain.cpu()
        self.clean_target_scores = store[0]
        self.z = [cache[z_hook(L)] for L in range(self.n_layers)]
        self.z_mean = [z[:, 1:].mean(dim=(0, 1)) for z in self.z]
        self.resid = [cache[resid_pre_hook(L)] for L in range(self.n_layers)] if self.fast else []

    @torch.no_grad()
    def _run(self, specs: Sequence[Spec]) -> tuple[torch.Tensor, torch.Tensor]:
        """(D [len(specs), n], target scores [len(specs), n, n_targets]) with replica r ablating specs[r]."""
        assert self.clean_target_scores is not None, "call clean() first"
        n_rep = len(specs)
        layers = sorted({L for replica, _ in specs for L in replica})
        start = layers[0] if layers else self.n_layers - 1
        store = self.clean_target_scores[None].repeat(n_rep, 1, 1)  # layers before `start` keep clean scores
        hooks = [(z_hook(L), self._z_hook(L, specs)) for L in layers] + self._score_hooks(n_rep, store)
        if self.fast:
            with skip_prefix(self.bridge, start) as head:
                x = self.resid[start].repeat(n_rep, 1, 1)
                out = self.bridge.run_with_hooks(x, start_at_layer=start, fwd_hooks=hooks)
            return self._drop(out, n_rep, head).cpu(), store
        out = self.bridge.run_with_hooks(self.tokens.repeat(n_rep, 1), fwd_hooks=hooks)
        return self._drop(out, n_rep, None).cpu(), store

    def attribution(self) -> torch.Tensor:
        """Attribution-patching estimate of each head's zero-ablation change in sum_seq D: [n_layers, n_heads].

        One forward with every hook_z captured as a graph leaf and one backward of sum(D):
        estimate(h) = sum over sequences, positions, d_head of dD/dz[..., h, :] * (0 - z[..., h, :]).
        """
        store: dict[int, torch.Tensor] = {}

        def capture(layer: int) -> Callable[..., torch.Tensor]:
            def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:
                z = z.detach().requires_grad_(True)
                store[layer] = z
                return z
            return hook

        with torch.enable_grad():
            out = self.bridge.run_with_hooks(self.tokens, fwd_hooks=[(z_hook(L), capture(L)) for L in range(self.n_layers)])
            total = self._drop(out, 1, None)[0].sum()
            zs = [store[L] for L in range(self.n_layers)]
            grads = torch.autograd.grad(total, zs)
        return torch.stack([(g.detach() * -z.detach()).sum(dim=(0, 1, 3)) for g, z in zip(grads, zs)]).double().cpu()

    def measure(self, specs: Sequence[Spec], progress: TaskHandle | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """All specs, `replicas` per forward, sorted by first ablated layer: (D [S, n], scores [S, n, n_targets])."""
        drops = torch.zeros(len(specs), self.n)
        scores = torch.zeros(len(specs), self.n, len(self.targets))
        order = sorted(range(len(specs)), key=lambda i: min(specs[i][0], default=0))
        for g in range(0, len(order), self.replicas):
            group = order[g:g + self.replicas]
            d, s = self._run([specs[i] for i in group])
            drops[group], scores[group] = d, s
            if progress is not None:
                progress.advance(len(group))
        return drops, scores
