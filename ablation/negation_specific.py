"""The negation-specific effect of an ablation, and the rule that turns effects into negation roles.

Why a new effect. Sensitivity S = LD_ctrl - LD_neg moves whenever a head scales the evidence for the
fact: if ablating a head halves every logit difference, S halves too, although the head does nothing
that is specific to "not". On the toy model's L0H4 (zero ablation) LD_aff fell by 9.01 nats, LD_ctrl by
6.69 and LD_neg rose by 1.49 (towards 0): ΔS = -8.18 nats, which the old rule read as a strong
negation supporter.

Definition. The *reversal* of a model state on a dataset is

    R = - mean(LD_neg) / mean(LD_ctrl)

the fraction of the control sentence's preference for the target that the negation word reverses:
R = 1 when "X is not" prefers the foil exactly as strongly as "X is also" prefers the target, R = 0
when negation is ignored, R < 0 when the negated prompt still prefers the affirmative answer. R is
unchanged when every logit difference is multiplied by the same factor, so a head that only scales
the evidence for the fact has ΔR = 0. A head that adds the same amount to every condition's LD leaves
S unchanged instead. The negation-specific effect of an ablation is ΔR = R(ablated) - R(clean), a
ratio of means computed on the same items. Its 95% CI resamples clusters (templates) with the same
draws for both states; its p-value swaps "clean" and "ablated" inside whole clusters (the paired
null: ablation changes nothing), two-sided. R is only defined when mean(LD_ctrl) is clearly positive
(its 95% CI excludes 0); otherwise the columns are NULL and the model is flagged as uninformative. Likewise
ΔR is NULL for an ablation after which mean LD_ctrl is no longer clearly positive (e.g. removing a whole
layer): the ablation destroyed the fact itself, and the accuracy deltas say so.

Worked example (L0H4 above): clean LD_neg -2.39, LD_ctrl +13.49 -> R = 0.177; ablated -0.90 and
+6.80 -> R = 0.132; ΔR = -0.045: most of ΔS = -8.18 was the fact being weakened, not negation.

Roles (one rule, :func:`negation_roles`), each needing significance AND size:

* ``general_damage``: ablation lowers affirmative AND negated accuracy, each significantly (BH q < 0.05)
  and by at least MIN_ACC_DELTA (5 points): the head is needed for the facts, with or without "not".
* ``negation_supporter`` / ``shortcut_promoter``: otherwise, when the effect is negation-specific in
  direction -- ΔR significant (q < 0.05) and ΔS significant with the same sign (a pure scaling of every
  LD moves S but not R; a pure additive shift of every LD moves R but not S) -- AND large enough to
  matter: |ΔR| >= MIN_REVERSAL_DELTA (0.05 of the control preference) or negated accuracy moving the
  same way by >= MIN_ACC_DELTA (5 points) with q < 0.05; and negated accuracy does not move the other
  way by 5 points. ΔR < 0 (removing the head weakens the reversal) is a supporter; ΔR > 0 (removing it
  strengthens the reversal: the head pushes the affirmative shortcut) a promoter.
* otherwise NULL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from headwiki.negation_rule import ALPHA, MIN_ACC_DELTA, MIN_REVERSAL_DELTA, RULE_TEXT  # noqa: F401 (re-exported)
from headwiki.negation_spec import DAMAGE, PROMOTER, REVERSAL, SUPPORTER, EFFECT_SPECS  # noqa: F401 (re-exported)
from headwiki.stats import CI_LEVEL, benjamini_hochberg, resample_counts

I_NEG, I_CTRL = 1, 2  # condition columns of an LD array [.., n_items, 3] (affirmative, negated, control)


def reversal(ld: np.ndarray) -> np.ndarray:
    """R = -mean(LD_neg) / mean(LD_ctrl) over items: ld [..., n_items, 3] -> [...]."""
    return -ld[..., I_NEG].mean(-1) / ld[..., I_CTRL].mean(-1)


@dataclass
class ReversalEffects:
    """Clean reversal with its CI, and per ablation (m rows) ΔR with CI, p and BH q over the m rows."""

    clean: float
    clean_lo: float
    clean_hi: float
    defined: bool  # mean LD_ctrl's CI excludes 0
    delta: np.ndarray  # [m]
    lo: np.ndarray
    hi: np.ndarray
    p: np.ndarray
    q: np.ndarray


def reversal_effects(base_ld: np.ndarray, ablated_ld: np.ndarray, clusters: np.ndarray, n_boot: int = 2000,
                     n_perm: int = 2000, seed: int = 0, level: float = CI_LEVEL) -> ReversalEffects:
    """base_ld [n, 3], ablated_ld [m, n, 3] (LDs per condition), clusters [n] -> :class:`ReversalEffects`."""
    base = np.asarray(base_ld, dtype=np.float64)
    abl = np.asarray(ablated_ld, dtype=np.float64)
    m = abl.shape[0]
    _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    k = int(inverse.max()) + 1
    b = np.zeros((k, 2))
    np.add.at(b, inverse, base[:, [I_NEG, I_CTRL]])
    a = np.zeros((m, k, 2))
    for j in range(m):
        np.add.at(a[j], inverse, abl[j][:, [I_NEG, I_CTRL]])
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero control sum makes R undefined (NaN), not an error
        return _reversal_effects(base, abl, b, a, inverse, k, n_boot, n_perm, seed, level)


def _reversal_effects(base: np.ndarray, abl: np.ndarray, b: np.ndarray, a: np.ndarray, inverse: np.ndarray, k: int,
                      n_boot: int, n_perm: int, seed: int, level: float) -> ReversalEffects:
    m = abl.shape[0]
    alpha = (1 - level) / 2
    rng = np.random.default_rng(seed)

    clean = float(-b[:, 0].sum() / b[:, 1].sum())
    draws = rng.integers(0, k, size=(n_boot, k))
    w = resample_counts(draws, k)
    ctrl_boot = w @ b[:, 1]  # [n_boot] sums of LD_ctrl (sign is what matters)
    r_clean_boot = -(w @ b[:, 0]) / ctrl_boot
    n_items = base.shape[0]
    sizes = np.bincount(inverse, minlength=k).astype(np.float64)
    ctrl_mean_boot = ctrl_boot / (w @ sizes)
    defined = bool(np.quantile(ctrl_mean_boot, alpha) > 0) and n_items > 1
    clean_lo, clean_hi = (float(np.quantile(r_clean_boot, alpha)), float(np.quantile(r_clean_boot, 1 - alpha)))
    nan = np.full(m, np.nan)
    if not defined:
        return ReversalEffects(clean, clean_lo, clean_hi, False, nan, nan.copy(), nan.copy(), nan.copy(), nan.copy())

    r_abl = -a[:, :, 0].sum(1) / a[:, :, 1].sum(1)  # [m]
    delta = r_abl - clean
    abl_ctrl_boot = a[:, :, 1] @ w.T  # [m, n_boot]
    r_abl_boot = -(a[:, :, 0] @ w.T) / abl_ctrl_boot
    d_boot = r_abl_boot - r_clean_boot[None, :]
    lo, hi = np.quantile(d_boot, alpha, axis=1), np.quantile(d_boot, 1 - alpha, axis=1)
    # an ablation that destroys the control preference leaves R undefined for that row
    lost = ~(np.quantile(abl_ctrl_boot / (w @ sizes)[None, :], alpha, axis=1) > 0)

    swap = rng.integers(0, 2, size=(n_perm, k)).astype(np.float64)  # 1: this cluster's states are swapped
    keep = 1.0 - swap
    # swapped "ablated" sums = own ablated sums where kept + clean sums where swapped; "clean" the reverse
    abl_neg = a[:, :, 0] @ keep.T + (swap @ b[:, 0])[None]
    abl_ctrl = a[:, :, 1] @ keep.T + (swap @ b[:, 1])[None]
    cln_neg = a[:, :, 0] @ swap.T + (keep @ b[:, 0])[None]
    cln_ctrl = a[:, :, 1] @ swap.T + (keep @ b[:, 1])[None]
    null = np.abs(-abl_neg / abl_ctrl + cln_neg / cln_ctrl)  # [m, n_perm]
    exceed = (np.nan_to_num(null, nan=np.inf) >= np.abs(delta)[:, None] - 1e-12).sum(1)
    p = (exceed + 1) / (n_perm + 1)
    p[np.all(abl == base[None], axis=(1, 2))] = 1.0
    for x in (delta, lo, hi, p):
        x[lost] = np.nan
    return ReversalEffects(clean, clean_lo, clean_hi, True, delta, lo, hi, p, benjamini_hochberg(p))


def negation_roles(d_rev: np.ndarray, q_rev: np.ndarray, d_sens: np.ndarray, q_sens: np.ndarray,
                   d_neg_acc: np.ndarray, q_neg_acc: np.ndarray, d_aff_acc: np.ndarray, q_aff_acc: np.ndarray,
                   alpha: float = ALPHA) -> list[str | None]:
    """The role rule of the module docstring, per row (all arrays [m]; NaN q counts as not significant)."""
    roles: list[str | None] = []
    for i in range(len(d_rev)):
        sig = lambda q: bool(np.isfinite(q[i]) and q[i] < alpha)  # noqa: E731
        if sig(q_aff_acc) and sig(q_neg_acc) and d_aff_acc[i] <= -MIN_ACC_DELTA and d_neg_acc[i] <= -MIN_ACC_DELTA:
            roles.append(DAMAGE.name)
            continue
        direction = sig(q_rev) and sig(q_sens) and np.sign(d_sens[i]) == np.sign(d_rev[i]) != 0
        acc_size = sig(q_neg_acc) and abs(d_neg_acc[i]) >= MIN_ACC_DELTA and np.sign(d_neg_acc[i]) == np.sign(d_rev[i])
        acc_against = np.sign(d_neg_acc[i]) == -np.sign(d_rev[i]) and abs(d_neg_acc[i]) >= MIN_ACC_DELTA
        if direction and (abs(d_rev[i]) >= MIN_REVERSAL_DELTA or acc_size) and not acc_against:
            roles.append(SUPPORTER.name if d_rev[i] < 0 else PROMOTER.name)
        else:
            roles.append(None)
    return roles




DISAGREEMENT_STEMS: dict[str, float] = {REVERSAL.name: MIN_REVERSAL_DELTA, EFFECT_SPECS["neg_acc"].name: MIN_ACC_DELTA}  # stem -> size


def kinds_disagree(frame: "pd.DataFrame", kinds: tuple[str, ...], alpha: float = ALPHA) -> tuple[list[bool], list[str | None]]:
    """Per head: do zero / mean / resample ablation disagree on a negation effect, and how (in words)?

    Two kinds disagree on a metric when both are significant (q < alpha) with opposite signs and one is at least
    the role's minimum size, or when their 95% CIs do not overlap and they differ by at least that size (with
    hundreds of items, CIs are narrow enough to separate differences too small to matter). frame holds `<stem>_<kind>` with `_lo`, `_hi`, `_q` for DISAGREEMENT_STEMS.
    Returns (flag per row, description per row or None)."""
    flags: list[bool] = []
    texts: list[str | None] = []
    for _, row in frame.iterrows():
        found = []
        for stem in DISAGREEMENT_STEMS:
            for i, a in enumerate(kinds):
                for b in kinds[i + 1:]:
                    ca, cb = f"{stem}_{a}", f"{stem}_{b}"
                    if ca not in row or cb not in row or not (np.isfinite(row[ca]) and np.isfinite(row[cb])):
                        continue
                    size = DISAGREEMENT_STEMS[stem]
                    opposite = (row[f"{ca}_q"] < alpha and row[f"{cb}_q"] < alpha and np.sign(row[ca]) * np.sign(row[cb]) < 0
                                and max(abs(row[ca]), abs(row[cb])) >= size)
                    apart = (row[f"{ca}_hi"] < row[f"{cb}_lo"] or row[f"{cb}_hi"] < row[f"{ca}_lo"]) and abs(row[ca] - row[cb]) >= size
                    if opposite or apart:
                        how = "opposite significant signs" if opposite else "non-overlapping 95% CIs"
                        found.append(f"{stem.removesuffix('_delta')}: {a} {row[ca]:+.3f} vs {b} {row[cb]:+.3f} ({how})")
        flags.append(bool(found))
        texts.append("; ".join(found) if found else None)
    return flags, texts
