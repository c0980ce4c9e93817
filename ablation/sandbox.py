"""The negation ablation sandbox's engine: ablate any set of heads together and report what changed.

UI-free (the marimo app, headwiki/sandbox/app.py, only renders what this returns). It reuses the pass:
the items are encoded like `headwiki ablate` encodes them (headwiki.ablation.scoring), the clean run is
cached once with its residual streams and per-head z (headwiki.ablation.sweep.AblationRunner: prefix reuse,
so a set of heads starting at layer L runs only blocks L..end), a head set is one replica spec of
``AblationRunner.run_specs`` (exactly how the pass ablates its head groups), and the effects are
the bootstrap of ``headwiki.ablation.effects.paired_effects`` (headwiki.stats) and ``reversal_effects`` with the group seed of
the pass, so a head set's Δs and CIs equal the `negation_groups` row the pass stores for the same heads
(tests/test_sandbox.py checks it). Its sign-flip p-values use a fixed n_perm (resolution 1 / (n_perm + 1))
where the pass refines small ones adaptively: a toggle must answer in about a second.

What one evaluation reports (:class:`SandboxResult`): affirmative / negated / control accuracy of the
ablated model with Wilson 95% CIs, mean sensitivity S with its cluster-bootstrap CI, the paired Δ vs the
clean model of each accuracy, S and the reversal R with CIs and sign-flip p-values, a plain verdict per
accuracy Δ (:func:`verdict`) and the items whose answer flipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from headwiki.ablation.effects import METRICS, cluster_labels, item_values
from headwiki.ablation.groups import HeadGroup
from headwiki.ablation.items import CONDITIONS, Dataset, resolve_dataset
from headwiki.ablation.negation_specific import reversal_effects
from headwiki.ablation.run import GROUP_EFFECT_SEED
from headwiki.ablation.scoring import bridge_encoder, check_known_tokens, correctness, encode_items, logit_diffs
from headwiki.ablation.sweep import ABLATIONS, AblationRunner
from headwiki.db.store import head_label
from headwiki.errors import HeadwikiError
from headwiki.models import LoadedModel
from headwiki.negation_rule import ALPHA, MIN_ACC_DELTA, MIN_REVERSAL_DELTA
from headwiki.negation_spec import EFFECT_SPECS, REVERSAL
from headwiki.stats import cluster_bootstrap_mean_ci, signflip_pvalue, wilson_interval

Head = tuple[int, int]  # (layer, head)
ACCURACY_METRICS: dict[str, str] = {"affirmative": "aff_acc", "negated": "neg_acc", "control": "ctrl_acc"}
# the Δs a sandbox result reports, in display order: the three accuracies, S, then the negation-specific R
DELTA_KEYS: tuple[str, ...] = ("neg_acc", "aff_acc", "ctrl_acc", "sens", REVERSAL.name)
SIGNIFICANT = "significant"
WITHIN_NOISE = "within noise"


@dataclass(frozen=True)
class Accuracy:
    """k correct of n with its Wilson 95% CI."""

    k: int
    n: int
    lo: float
    hi: float

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else float("nan")


@dataclass(frozen=True)
class Verdict:
    """`word` is SIGNIFICANT or WITHIN_NOISE; `reason` says which threshold decided it."""

    word: str
    reason: str

    @property
    def significant(self) -> bool:
        return self.word == SIGNIFICANT


@dataclass(frozen=True)
class Delta:
    """Paired effect ablated - clean (mean over items) with its 95% cluster-bootstrap CI and sign-flip p."""

    key: str
    label: str
    unit: str
    delta: float
    lo: float
    hi: float
    p: float
    verdict: Verdict


@dataclass(frozen=True)
class Flip:
    """An item whose answer on one condition changed: LDs before and after, and whether it is now correct."""

    item_id: str
    condition: str
    prompt: str
    target: str
    foil: str
    clean_ld: float
    ablated_ld: float
    now_correct: bool


@dataclass(frozen=True)
class SandboxResult:
    """One evaluation: the heads (sorted), the ablation kind, ablated and clean accuracies, S, Δs, flips."""

    heads: tuple[Head, ...]
    kind: str
    dataset: str
    n_items: int
    cluster_unit: str
    accuracy: dict[str, Accuracy]
    clean_accuracy: dict[str, Accuracy]
    sensitivity: tuple[float, float, float]
    clean_sensitivity: tuple[float, float, float]
    deltas: dict[str, Delta]
    flips: list[Flip] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [head_label(L, h) for L, h in self.heads]

    @property
    def verdict(self) -> Verdict:
        """The headline verdict: on negated accuracy (the sandbox's question)."""
        return self.deltas["neg_acc"].verdict


def verdict(delta: float, lo: float, hi: float, p: float, min_effect: float = MIN_ACC_DELTA, alpha: float = ALPHA) -> Verdict:
    """SIGNIFICANT when p < alpha, the 95% CI excludes 0 and |delta| >= min_effect; else WITHIN_NOISE, with why.

    Pure. The default floor is the 5-point accuracy noise floor of headwiki.negation_rule; p is one test of one
    head set (toggling many sets and keeping the best is a multiple comparison the user makes).
    """
    if not np.isfinite(delta):
        return Verdict(WITHIN_NOISE, "undefined on these items (NaN)")
    if not (p < alpha):
        return Verdict(WITHIN_NOISE, f"p = {p:.3g} ≥ {alpha}")
    if lo <= 0 <= hi:
        return Verdict(WITHIN_NOISE, f"the 95% CI [{lo:+.3f}, {hi:+.3f}] holds 0")
    if abs(delta) < min_effect:
        return Verdict(WITHIN_NOISE, f"|Δ| = {abs(delta):.3f} is under the noise floor {min_effect}")
    return Verdict(SIGNIFICANT, f"p = {p:.3g} < {alpha}, CI excludes 0 and |Δ| ≥ {min_effect}")


def flipped_items(dataset: Dataset, clean_ld: np.ndarray, ablated_ld: np.ndarray) -> list[Flip]:
    """Items whose correctness changed on some condition: clean_ld, ablated_ld [n_items, 3] (CONDITIONS order)."""
    ok_clean = _correct(clean_ld)
    ok_abl = _correct(ablated_ld)
    out = []
    for i, j in zip(*np.nonzero(ok_clean != ok_abl)):
        it, cond = dataset.items[i], CONDITIONS[j]
        out.append(Flip(it.id, cond, it.prompt(cond), it.target, it.foil, float(clean_ld[i, j]), float(ablated_ld[i, j]),
                        bool(ok_abl[i, j])))
    return out


def _correct(ld: np.ndarray) -> np.ndarray:
    return correctness(torch.as_tensor(ld)).numpy().astype(bool)


class Sandbox:
    """A loaded model and an encoded negation dataset with the clean run cached; :meth:`evaluate` ablates a head set.

    Same defaults as `headwiki ablate` (seed 0, batch 64, 2000 bootstrap resamples and permutations), so its numbers
    equal the pass's group rows for the same items. Results are memoized per (heads, kind): evaluate is a pure
    function of its arguments.
    """

    def __init__(self, loaded: LoadedModel, dataset: str, *, seed: int = 0, max_items: int | None = None,
                 batch_size: int = 64, max_rows: int = 256, n_boot: int = 2000, n_perm: int = 2000) -> None:
        bridge, info = loaded.bridge, loaded.info
        self.info = info
        self.seed, self.n_boot, self.n_perm = seed, n_boot, n_perm
        self.dataset = resolve_dataset(dataset, seed=seed, max_items=max_items)
        pad_id = bridge.tokenizer.pad_token_id if getattr(bridge.tokenizer, "pad_token_id", None) is not None else 0
        check_known_tokens(self.dataset.items, bridge_encoder(bridge, loaded.start), getattr(bridge.tokenizer, "unk_token_id", None),
                           self.dataset.name, info.name, dataset)
        enc = encode_items(self.dataset.items, bridge_encoder(bridge, loaded.start), info.n_ctx, pad_id=pad_id)
        self.runner = AblationRunner(bridge, enc, batch_size=batch_size, max_rows=max_rows, seed=seed)
        clean = self.runner.clean(keep_z=True)  # z of every layer: resample ablation draws donors from it
        self.base_vals = item_values(clean.slot_lp.cpu()).numpy()  # [n, len(METRICS)]
        self.base_ld = logit_diffs(clean.slot_lp.cpu().double()).numpy()  # [n, 3]
        self.clusters, self.cluster_unit = cluster_labels([it.template for it in self.dataset.items],
                                                          [it.id for it in self.dataset.items])
        self.clean_accuracy = _accuracies(self.base_vals)
        self.clean_sensitivity = self._mean_ci(self.base_vals[:, METRICS.index("sens")])
        self._memo: dict[tuple[tuple[Head, ...], str], SandboxResult] = {}

    @property
    def n_layers(self) -> int:
        return self.runner.n_layers

    @property
    def n_heads(self) -> int:
        return self.runner.n_heads

    def check_heads(self, heads: Iterable[Head]) -> tuple[Head, ...]:
        """Sorted unique heads; a one-line HeadwikiError for a head outside the model."""
        out = tuple(sorted({(int(L), int(h)) for L, h in heads}))
        bad = [x for x in out if not (0 <= x[0] < self.n_layers and 0 <= x[1] < self.n_heads)]
        if bad:
            raise HeadwikiError(f"head {head_label(*bad[0])} is outside {self.info.name} "
                                f"({self.n_layers} layers x {self.n_heads} heads): pick heads L0H0..{head_label(self.n_layers - 1, self.n_heads - 1)}")
        return out

    def n_steps(self, heads: Iterable[Head], kind: str = "zero") -> int:
        """How many batched forwards :meth:`evaluate` runs for this head set (0 when memoized or empty)."""
        key = (self.check_heads(heads), kind)
        if not key[0] or key in self._memo:
            return 0
        return self.runner.n_forwards([(HeadGroup("sandbox", "sandbox", len(key[0]), key[0]).replica, kind)])

    def evaluate(self, heads: Iterable[Head], kind: str = "zero", on_step: Callable[[], None] | None = None) -> SandboxResult:
        """Ablate `heads` together with `kind` (zero | mean | resample) on every item; see :class:`SandboxResult`.

        `on_step` is called after each batched forward (:meth:`n_steps` of them): the app's progress bar."""
        if kind not in ABLATIONS:
            raise HeadwikiError(f"unknown ablation {kind!r}: use one of {', '.join(ABLATIONS)}")
        key = (self.check_heads(heads), kind)
        if key not in self._memo:
            self._memo[key] = self._evaluate(*key, on_step=on_step)
        return self._memo[key]

    def _evaluate(self, heads: tuple[Head, ...], kind: str, on_step: Callable[[], None] | None = None) -> SandboxResult:
        if heads:
            group = HeadGroup("sandbox", "sandbox", len(heads), heads)
            lp = self.runner.run_specs([(group.replica, kind)], on_forward=on_step)  # [1, n_slots]
            vals = item_values(lp).numpy()  # [1, n, len(METRICS)]
            ld = logit_diffs(lp.double()).numpy()  # [1, n, 3]
        else:  # nothing ablated: the clean model (Δ = 0 exactly, no forward)
            vals, ld = self.base_vals[None], self.base_ld[None]
        seed = self.seed + GROUP_EFFECT_SEED
        cols = [METRICS.index(k) for k in DELTA_KEYS[:-1]]
        diff = vals[0][:, cols] - self.base_vals[:, cols]  # [n, 4]
        # the CIs are the pass's (paired_effects: same seed, same bootstrap draws for every column); the p-values use
        # a fixed n_perm sign flips (resolution 1 / (n_perm + 1)) instead of its adaptive refinement, to answer live
        mean, lo_, hi_ = cluster_bootstrap_mean_ci(diff, self.clusters, n_boot=self.n_boot, seed=seed)
        p_ = signflip_pvalue(diff, self.clusters, n_perm=self.n_perm, seed=seed + 1, max_perm=self.n_perm).p
        r = reversal_effects(self.base_ld, ld, self.clusters, n_boot=self.n_boot, n_perm=self.n_perm, seed=seed + 5)
        deltas: dict[str, Delta] = {}
        for key in DELTA_KEYS:
            if key == REVERSAL.name:
                spec, d, lo, hi, p, floor = REVERSAL, r.delta[0], r.lo[0], r.hi[0], r.p[0], MIN_REVERSAL_DELTA
            else:
                j = DELTA_KEYS.index(key)
                spec, d, lo, hi, p = EFFECT_SPECS[key], mean[j], lo_[j], hi_[j], p_[j]
                floor = MIN_ACC_DELTA if key in ACCURACY_METRICS.values() else 0.0
            v = verdict(float(d), float(lo), float(hi), float(p), min_effect=floor)
            if not heads:
                v = Verdict(WITHIN_NOISE, "no heads ablated")
            deltas[key] = Delta(key, spec.label, spec.unit, float(d), float(lo), float(hi), float(p), v)
        return SandboxResult(
            heads=heads, kind=kind, dataset=self.dataset.name, n_items=len(self.dataset.items), cluster_unit=self.cluster_unit,
            accuracy=_accuracies(vals[0]), clean_accuracy=self.clean_accuracy,
            sensitivity=self._mean_ci(vals[0][:, METRICS.index("sens")]), clean_sensitivity=self.clean_sensitivity,
            deltas=deltas, flips=flipped_items(self.dataset, self.base_ld, ld[0]),
        )

    def _mean_ci(self, x: np.ndarray) -> tuple[float, float, float]:
        mean, lo, hi = cluster_bootstrap_mean_ci(x[:, None], self.clusters, n_boot=self.n_boot, seed=self.seed)
        return float(mean[0]), float(lo[0]), float(hi[0])


def _accuracies(vals: np.ndarray) -> dict[str, Accuracy]:
    """vals [n, len(METRICS)] -> {condition: Accuracy with its Wilson CI}."""
    n = vals.shape[0]
    out = {}
    for cond, metric in ACCURACY_METRICS.items():
        k = int(round(vals[:, METRICS.index(metric)].sum()))
        lo, hi = wilson_interval(k, n)
        out[cond] = Accuracy(k, n, lo, hi)
    return out

