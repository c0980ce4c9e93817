"""Exact per-head ablations with prefix reuse and head batching.

Definitions (also in the `metrics` table descriptions):

* zero ablation: head h's output before W_O (``blocks.L.attn.hook_z[:, :, h, :]``) is set to 0 at
  every position (the attention output bias b_O stays).
* mean ablation: it is set, at every position, to the mean of that head's ``hook_z`` over all
  non-pad prompt positions of all prompts of the dataset (affirmative, negated and control prompts
  of every item, each prompt counted once, candidate tokens excluded), from the clean run.
* resample ablation: it is set to the same head's ``hook_z`` on another sequence of the dataset (a
  donor from a different item, any condition, drawn with a seeded permutation inside the batch, whose
  sequences have similar lengths), position by position; positions past the donor's length take the
  mean-ablation value. RESAMPLE_DRAWS independent donor draws are run and their slot log-probs
  averaged (the expected log-prob under resampling).

Speed: an ablation at layer L cannot change anything before block L, so the sweep reuses the clean
run's residual stream entering block L (``blocks.L.hook_resid_pre``) and runs only blocks L..end:
``bridge.forward(resid, start_at_layer=L)`` still executes blocks 0..L-1 internally in TL 4.3, so
:func:`skip_prefix` temporarily swaps those blocks' HF modules for identities. The unembedding is
swapped too and applied only at the positions that are scored. Several heads of one layer are
ablated in one forward by replicating the batch (replica r ablates head r). The runner verifies
the shortcut against a plain forward on the first batch and falls back to plain forwards
(correct, slower) when they disagree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from headwiki.ablation.scoring import Encoded, slot_logprobs
from headwiki.batching import chunks
from headwiki.hooks import require_hooks, resid_pre_hook, z_hook
from headwiki.progress import TaskHandle, log

ABLATIONS: tuple[str, ...] = ("zero", "mean", "resample")
RESAMPLE = "resample"
RESAMPLE_DRAWS = 3
SELF = "self"  # patch a head with its own clean activation (an invariant check: must change nothing)
FAST_PATH_TOL = 1e-4

Replica = dict[int, tuple[int, ...]]  # layer -> heads ablated together in one replica
Spec = tuple[Replica, str]  # (heads, ablation kind)


class _Identity(nn.Module):
    """Stands in for a skipped HF decoder layer / the lm_head: returns its hidden-states input."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return args[0] if args else kwargs["hidden_states"]


@contextmanager
def skip_prefix(bridge: Any, start_layer: int) -> Iterator[nn.Module]:
    """Make blocks 0..start_layer-1 and the unembedding identities; yield the real unembedding module.

    Inside, ``bridge(resid, start_at_layer=start_layer)`` returns the final normalized residual
    [batch, pos, d_model]; apply the yielded module to the rows you score. Restored in `finally`.
    """
    saved: list[tuple[nn.Module, nn.Module]] = []
    try:
        for i in range(start_layer):
            block = bridge.blocks[i]
            saved.append((block, block._modules["_original_component"]))
            block._modules["_original_component"] = _Identity()
        unembed = bridge.unembed
        saved.append((unembed, unembed._modules["_original_component"]))
        unembed._modules["_original_component"] = _Identity()
        yield saved[-1][1]
    finally:
        for module, original in saved:
            module._modules["_original_component"] = original


@dataclass
class CleanRun:
    """The clean (unablated) run: slot log-probs [n_slots], per-chunk per-layer resid_pre [B, T, d_model]
    (only with the fast path), mean z [n_layers, n_heads, d_head], optional per-chunk per-layer z [B, T, n_heads, d_head]."""

    slot_lp: torch.Tensor
    z_mean: torch.Tensor
    resid: list[list[torch.Tensor]] = field(default_factory=list)
    z: list[list[torch.Tensor]] | None = None


class AblationRunner:
    """Runs clean and ablated forwards over the encoded items in batches of `batch_size` units."""

    def __init__(self, bridge: Any, enc: Encoded, batch_size: int = 64, max_rows: int = 256, prefix_reuse: bool = True,
                 seed: int = 0) -> None:
        self.bridge = bridge
        self.enc = enc
        self.n_layers = int(bridge.cfg.n_layers)
        self.n_heads = int(bridge.cfg.n_heads)
        require_hooks(bridge, [z_hook(L) for L in range(self.n_layers)] + [resid_pre_hook(L) for L in range(self.n_layers)],
                      "head ablations")
        device = next(bridge.parameters()).device
        self.batch_size = batch_size
        self.chunks = [enc.chunk(sl).to(device) for sl in chunks(enc.n_units, batch_size)]
        self.replicas_per_forward = max(1, max_rows // batch_size)
        self.fast = prefix_reuse
        self.fast_path_diff: float | None = None
        self.clean_run: CleanRun | None = None
        self.seed = seed
        self._donors: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    # ----- scoring -------------------------------------------------------------------------
    def score(self, out: torch.Tensor, c: int, n_replicas: int, head: nn.Module | None, enc: Encoded | None = None) -> torch.Tensor:
        """Slot log-probs [n_replicas, n_slots] from a forward's output (final hidden with `head`, or logits)
        on chunk c's units (or on `enc`, e.g. a selection of them)."""
        enc = self.chunks[c] if enc is None else enc
        b = enc.n_units
        rows = []
        for r in range(n_replicas):
            x = out[r * b + enc.term_unit, enc.term_pos]
            rows.append(slot_logprobs(head(x) if head is not None else x, enc.term_tok, enc.term_slot, enc.n_slots))
        return torch.stack(rows)

    # ----- clean run -----------------------------------------------------------------------
    @torch.no_grad()
    def clean(self, keep_z: bool = False) -> CleanRun:
        """One forward per chunk caching resid_pre (fast path) and z of every layer; verifies the fast path."""
        if self.fast:
            self._verify_fast_path()
        wanted = {z_hook(L) for L in range(self.n_layers)} | ({resid_pre_hook(L) for L in range(self.n_layers)} if self.fast else set())
        total = torch.zeros(self.enc.n_slots, device=self.chunks[0].tokens.device)
        z_sum: torch.Tensor | None = None
        count = 0
        resid: list[list[torch.Tensor]] = []
        zs: list[list[torch.Tensor]] | None = [] if keep_z else None
        for c, enc in enumerate(self.chunks):
            if self.fast:
                with skip_prefix(self.bridge, 0) as head:
                    out, cache = self.bridge.run_with_cache(enc.tokens, names_filter=lambda n: n in wanted)
                resid.append([cache[resid_pre_hook(L)] for L in range(self.n_layers)])
            else:
                head = None
                out, cache = self.bridge.run_with_cache(enc.tokens, names_filter=lambda n: n in wanted)
            total += self.score(out, c, 1, head)[0]
            z = torch.stack([cache[z_hook(L)] for L in range(self.n_layers)])  # [nL, B, T, nH, dh]
            mask = enc.prompt_mask[None, :, :, None, None].to(z.dtype)
            part = (z.double() * mask).sum(dim=(1, 2))  # [nL, nH, dh]
            z_sum = part if z_sum is None else z_sum + part
            count += int(enc.prompt_mask.sum())
            if zs is not None:
                zs.append([cache[z_hook(L)] for L in range(self.n_layers)])
        assert z_sum is not None
        dtype = next(self.bridge.parameters()).dtype
        self.clean_run = CleanRun(slot_lp=total, z_mean=(z_sum / count).to(dtype), resid=resid, z=zs)
        return self.clean_run

    def _verify_fast_path(self) -> None:
        """Compare prefix-reuse scoring with a plain forward on the first chunk; fall back on mismatch."""
        enc = self.chunks[0]
        mid = self.n_layers // 2
        try:
            plain = self.score(self.bridge(enc.tokens), 0, 1, None)[0]
            with skip_prefix(self.bridge, 0) as head:
                _, cache = self.bridge.run_with_cache(enc.tokens, names_filter=lambda n: n == resid_pre_hook(mid))
            with skip_prefix(self.bridge, mid) as head:
                reused = self.score(self.bridge(cache[resid_pre_hook(mid)], start_at_layer=mid), 0, 1, head)[0]
            diff = float((plain - reused).abs().max())
        except Exception as exc:  # noqa: BLE001 - any failure of the shortcut means: use plain forwards
            log(f"[yellow]prefix reuse unavailable for this architecture ({type(exc).__name__}: {exc}); using full forwards")
            self.fast, self.fast_path_diff = False, None
            return
        self.fast_path_diff = diff
        if diff > FAST_PATH_TOL:
            log(f"[yellow]prefix reuse disagrees with a full forward by {diff:.2e}; using full forwards (correct, slower)")
            self.fast = False

    # ----- ablated runs --------------------------------------------------------------------
    @staticmethod
    def expand(kind: str) -> list[str]:
        """The forward kinds one ablation kind runs as: resample -> one per donor draw ('resample:0', ...)."""
        return [f"{RESAMPLE}:{d}" for d in range(RESAMPLE_DRAWS)] if kind == RESAMPLE else [kind]

    def donors(self, c: int, draw: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(donor unit index [b], donor length [b]) for chunk c and a draw: a seeded permutation of the chunk's
        units in which no unit keeps its own item (when the chunk holds more than one item)."""
        if (c, draw) not in self._donors:
            enc = self.chunks[c]
            b = enc.n_units
            item = torch.full((b,), -1, dtype=torch.long)
            item[enc.term_unit.cpu()] = enc.term_slot.cpu() // 6  # slot = (item * 3 + condition) * 2 + candidate
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + draw * 1009 + c)
            perm = torch.randperm(b, generator=gen)
            for _ in range(b):  # repair donors from the same item by swapping with a random other position
                bad = (item[perm] == item).nonzero().flatten()
                if len(bad) == 0 or len(set(item.tolist())) < 2:
                    break
                for i in bad.tolist():
                    j = int(torch.randint(0, b, (1,), generator=gen))
                    perm[i], perm[j] = perm[j].clone(), perm[i].clone()
            self._donors[(c, draw)] = (perm.to(enc.tokens.device), enc.lengths[perm.to(enc.lengths.device)])
        return self._donors[(c, draw)]

    def _value(self, kind: str, layer: int, head: int, c: int, rows: slice) -> torch.Tensor | float:
        if kind == "zero":
            return 0.0
        assert self.clean_run is not None, "call clean() first"
        if kind == "mean":
            return self.clean_run.z_mean[layer, head]
        if kind.startswith(f"{RESAMPLE}:"):
            assert self.clean_run.z is not None, "clean(keep_z=True) is needed for resample ablation"
            donor, length = self.donors(c, int(kind.split(":")[1]))
            z = self.clean_run.z[c][layer][donor, :, head, :]  # [b, T, d_head]
            past = torch.arange(z.shape[1], device=z.device)[None, :] >= length[:, None].to(z.device)
            return torch.where(past[..., None], self.clean_run.z_mean[layer, head].to(z.dtype), z)
        if kind == SELF:
            assert self.clean_run.z is not None, "clean(keep_z=True) is needed for self-patching"
            return self.clean_run.z[c][layer][:, :, head, :]
        raise ValueError(f"unknown ablation {kind!r}: use one of {ABLATIONS}")

    def _add(self, out: dict[str, torch.Tensor], key: tuple[int, ...], fkind: str, row: torch.Tensor) -> None:
        """Accumulate a forward kind's slot log-probs into its ablation kind (resample draws averaged)."""
        kind = fkind.split(":")[0]
        out[kind][key] += row / (RESAMPLE_DRAWS if kind == RESAMPLE else 1)

    def _hook(self, layer: int, specs: Sequence[Spec], c: int) -> Callable[..., torch.Tensor]:
        b = self.chunks[c].n_units

        def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:
            for r, (replica, kind) in enumerate(specs):
                for h in replica.get(layer, ()):
                    rows = slice(r * b, (r + 1) * b)
                    z[rows, :, h, :] = self._value(kind, layer, h, c, rows)
            return z

        return hook

    @torch.no_grad()
    def run(self, c: int, specs: Sequence[Spec], fast: bool | None = None) -> torch.Tensor:
        """Slot log-probs [len(specs), n_slots] for chunk `c`, replica r ablating specs[r] (one forward)."""
        fast = self.fast if fast is None else fast
        enc = self.chunks[c]
        layers = sorted({L for replica, _ in specs for L in replica})
        hooks = [(z_hook(L), self._hook(L, specs, c)) for L in layers]
        n = len(specs)
        start = layers[0] if layers else self.n_layers - 1
        if fast:
            assert self.clean_run is not None and self.clean_run.resid, "call clean() first"
            with skip_prefix(self.bridge, start) as head:
                x = self.clean_run.resid[c][start].repeat(n, 1, 1)
                out = self.bridge.run_with_hooks(x, start_at_layer=start, fwd_hooks=hooks)
            return self.score(out, c, n, head)
        out = self.bridge.run_with_hooks(enc.tokens.repeat(n, 1), fwd_hooks=hooks)
        return self.score(out, c, n, None)

    def sweep(self, kinds: Sequence[str], progress: TaskHandle | None = None,
              heads: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """Every head x every kind: {kind: slot log-probs [n_layers, n_heads, n_slots]} (summed over chunks).

        `heads` restricts the sweep to these head indices in every layer (benchmarks); other rows stay 0.
        """
        out = {k: torch.zeros(self.n_layers, self.n_heads, self.enc.n_slots) for k in kinds}
        r = self.replicas_per_forward
        for layer in range(self.n_layers):
            todo = [(h, fk) for k in kinds for fk in self.expand(k) for h in (range(self.n_heads) if heads is None else heads)]
            for g in range(0, len(todo), r):
                group = todo[g:g + r]
                specs = [({layer: (h,)}, fk) for h, fk in group]
                for c in range(len(self.chunks)):
                    lp = self.run(c, specs).cpu()
                    for (h, fk), row in zip(group, lp):
                        self._add(out, (layer, h), fk, row)
                if progress is not None:
                    progress.advance(sum(1 / len(self.expand(fk.split(":")[0])) for _, fk in group))
        return out

    def naive_sweep(self, kinds: Sequence[str], progress: TaskHandle | None = None,
                    heads: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """The reference loop: one full forward per head per ablation (per chunk). Same output layout as sweep()."""
        out = {k: torch.zeros(self.n_layers, self.n_heads, self.enc.n_slots) for k in kinds}
        for layer in range(self.n_layers):
            for k in kinds:
                for h in (range(self.n_heads) if heads is None else heads):
                    for fk in self.expand(k):
                        for c in range(len(self.chunks)):
                            self._add(out, (layer, h), fk, self.run(c, [({layer: (h,)}, fk)], fast=False)[0].cpu())
                    if progress is not None:
                        progress.advance()
        return out

    def n_forwards(self, specs: Sequence[Spec]) -> int:
        """How many batched forwards :meth:`run_specs` runs for `specs` (what `on_forward` counts up to)."""
        n_flat = sum(len(self.expand(k)) for _, k in specs)
        return -(-n_flat // self.replicas_per_forward) * len(self.chunks)

    def run_specs(self, specs: Sequence[Spec], progress: TaskHandle | None = None,
                  on_forward: Callable[[], None] | None = None) -> torch.Tensor:
        """Arbitrary head sets (groups, whole layers): slot log-probs [len(specs), n_slots].

        Specs are batched like heads in sweep() (replica r ablates specs[r]); sorted by their first
        layer so each forward starts as late as its earliest replica allows. `on_forward` is called after
        each batched forward (:meth:`n_forwards` of them): the sandbox's progress bar.
        """
        flat = [(i, (replica, fk)) for i, (replica, k) in enumerate(specs) for fk in self.expand(k)]
        out = {k: torch.zeros(len(specs), self.enc.n_slots) for k in {k for _, k in specs}}
        order = sorted(range(len(flat)), key=lambda j: min(flat[j][1][0], default=0))
        r = self.replicas_per_forward
        for g in range(0, len(order), r):
            group = order[g:g + r]
            for c in range(len(self.chunks)):
                lp = self.run(c, [flat[j][1] for j in group]).cpu()
                for j, row in zip(group, lp):
                    self._add(out, (flat[j][0],), flat[j][1][1], row)
                if on_forward is not None:
                    on_forward()
            if progress is not None:
                progress.advance(sum(1 / len(self.expand(flat[j][1][1].split(":")[0])) for j in group))
        return sum(out[k] for k in out) if out else torch.zeros(0, self.enc.n_slots)
