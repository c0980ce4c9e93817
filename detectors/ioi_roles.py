"""The IOI family of head roles (Wang et al. 2022), scored on headwiki's own IOI prompts (headwiki.ioi).

Only on a model that does IOI: the clean logit difference LD = logit(IO) - logit(S) must clear
headwiki.ioi.MIN_LOGIT_DIFF nats with headwiki.ioi.MIN_ACCURACY of prompts right; otherwise every IOI column is
NULL, no head is labelled, and the run's params say "not applicable" and why (the toy model has no single-token
names at all). Scores (per ABBA/BABA twin pair, averaged over the twins; 95% bootstrap CI over pairs):

* ``ioi_name_mover`` — the head's direct logit attribution (DLA) on IO - S of what it moves from the IO position at
  END: attention(END -> IO) x (value at IO) W_O . d, d the IO - S unembedding direction through the final norm with
  its scale frozen (exact linearization). High = END attends to IO and the OV circuit raises IO's logit. Control
  (``ioi_name_mover_control``): the same moved vector read on (absent name) - S: a head that copies IO scores more
  on IO than on a name that is not in the prompt.
* ``ioi_negative_name_mover`` — minus that DLA: END attends to IO and the OV circuit lowers IO (control: minus the
  absent-name DLA).
* ``ioi_s_inhibition`` — for candidate heads (the top-K by attention END -> S2 in layers before the last labelled
  name mover, not name movers themselves): how much the labelled name movers' attention END -> IO drops when the
  head is mean-ablated (hook_z at every position set to its mean over the prompts). NULL elsewhere.
* ``ioi_backup_name_mover`` — how much the head's DLA on IO - S of its whole output at END rises when every labelled
  name mover is mean-ablated together (layers after the first name mover; name movers themselves NULL).
* ``ioi_attn_io``, ``ioi_attn_s2`` — mean attention END -> IO and END -> S2 (context for the roles).

Role rule (each IOI role): score >= threshold AND 95% CI lower bound > its control (the content control for the
name movers; 0 = no effect for S-inhibition and backup, which are ablation effects). The roles are held in the
same ``roles`` column as the detector roles, so ``n_roles``, ``multi_role``, ``heads --role`` and the confound
panel count them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from headwiki.causal_spec import IOI_LD
from headwiki.ioi import IOIRunner, IOIUnavailable, baseline_verdict, make_prompts
from headwiki.spec import Metric, Role, metric, role
from headwiki.stats import bootstrap_mean_ci

DEFAULT_N_PAIRS = 24
DEFAULT_N_CANDIDATES = 8
CITATION = "Wang et al. 2022, Interpretability in the Wild: a Circuit for Indirect Object Identification in GPT-2 small"
_DATA = "headwiki's IOI prompts (headwiki.ioi: own names, places, objects, 8 templates, ABBA/BABA twins)"

NAME_MOVER = metric(Metric(
    "ioi_name_mover", "IOI name mover", "detector", "score", "nats",
    "direct logit attribution on IO - S of what the head moves from the IO position at END (attention END->IO x value "
    "at IO x W_O, through the final norm with its scale frozen); mean over ABBA/BABA twin pairs",
    data=_DATA, ci=True, heatmap=True, direction="signed", order=20, confound="lost copying of the indirect object's name"))
NAME_MOVER_CONTROL = metric(Metric(
    "ioi_name_mover_control", "IOI name mover (absent-name control)", "control", "control", "nats",
    "the same moved vector read on (a name absent from the prompt) - S instead of IO - S", data=_DATA, direction="signed"))
NEGATIVE = metric(Metric(
    "ioi_negative_name_mover", "IOI negative name mover", "detector", "score", "nats",
    "minus the name-mover DLA: END attends to IO and the OV circuit lowers IO's logit", data=_DATA, ci=True,
    direction="signed", order=21, confound="lost suppression of the indirect object's name (calibration)"))
NEGATIVE_CONTROL = metric(Metric(
    "ioi_negative_name_mover_control", "IOI negative name mover (absent-name control)", "control", "control", "nats",
    "minus the absent-name DLA of the moved vector", data=_DATA, direction="signed"))
S_INHIBITION = metric(Metric(
    "ioi_s_inhibition", "IOI S-inhibition", "detector", "score", "attention",
    "drop in the labelled name movers' mean attention END->IO when this head is mean-ablated (candidates: top heads by "
    "attention END->S2 before the last name mover; NULL elsewhere)", data=_DATA, ci=True, direction="signed", order=22,
    confound="name movers no longer steered away from the subject"))
BACKUP = metric(Metric(
    "ioi_backup_name_mover", "IOI backup name mover", "detector", "score", "nats",
    "rise of the head's DLA on IO - S (whole output at END) when every labelled name mover is mean-ablated (layers after "
    "the first name mover; NULL for name movers and earlier layers)", data=_DATA, ci=True, direction="signed", order=23,
    confound="lost compensation when the name movers are removed"))
ATTN_IO = metric(Metric("ioi_attn_io", "IOI attention END->IO", "detector", "score", "attention",
                        "mean attention from END to the indirect object's name", data=_DATA, ci=True, order=24))
ATTN_S2 = metric(Metric("ioi_attn_s2", "IOI attention END->S2", "detector", "score", "attention",
                        "mean attention from END to the second mention of the subject", data=_DATA, ci=True, order=25))
METRICS = (NAME_MOVER, NAME_MOVER_CONTROL, NEGATIVE, NEGATIVE_CONTROL, S_INHIBITION, BACKUP, ATTN_IO, ATTN_S2)

_RULE = "score >= threshold AND 95% CI lower bound (bootstrap over twin pairs) > {ctrl}; only on a model whose IOI baseline clears the bar (headwiki.ioi)"
# Thresholds set before looking at SmolLM2: a name mover moves >= 0.5 nats of IO - S on its own (Wang et al.'s GPT-2
# small name movers each write ~1-3 of its ~3.6 nats); S-inhibition: ablating the head lowers the name movers' attention
# to IO by >= 0.05; backup: the head's own direct effect rises by >= 0.25 nats once the name movers are gone.
ROLE_NM = role(Role(
    "name_mover", "name mover", "ioi", NAME_MOVER.name,
    text="at the last token attends to the indirect object's name and copies it into the logits", colour="#01665e",
    threshold=0.5, rule=_RULE.format(ctrl=NAME_MOVER_CONTROL.name + " (the same vector read on an absent name)"),
    control="the moved vector read on a name absent from the prompt (content control)",
    consequence="lost copying of the indirect object's name", signatures=(IOI_LD,), citation=CITATION, order=10))
ROLE_NEG = role(Role(
    "negative_name_mover", "negative name mover", "ioi", NEGATIVE.name,
    text="attends to the indirect object's name and lowers its logit (copy suppression)", colour="#d6604d",
    threshold=0.5, rule=_RULE.format(ctrl=NEGATIVE_CONTROL.name),
    control="minus the moved vector read on a name absent from the prompt",
    consequence="lost suppression of the indirect object's name (the model gets over-confident)",
    no_signature="ablating a negative name mover raises the IO logit difference; no test against random heads is run for it",
    citation=CITATION, order=11))
ROLE_SI = role(Role(
    "s_inhibition", "S-inhibition", "ioi", S_INHIBITION.name,
    text="attends to the subject's second mention and steers the name movers away from the subject", colour="#8073ac",
    threshold=0.05, rule=_RULE.format(ctrl="0 (no effect)"), control="0: no change of the name movers' attention",
    consequence="name movers no longer steered away from the subject",
    no_signature="its score is itself an ablation effect (on the name movers' attention)", citation=CITATION, order=12))
ROLE_BACKUP = role(Role(
    "backup_name_mover", "backup name mover", "ioi", BACKUP.name,
    text="takes over the name movers' job when they are ablated", colour="#66bd63", threshold=0.25,
    rule=_RULE.format(ctrl="0 (no rise)"), control="0: no rise of its direct effect",
    consequence="lost compensation when the name movers are removed",
    no_signature="its score is itself an ablation effect (its direct effect with the name movers removed)",
    citation=CITATION, order=13))
ROLES = (ROLE_NM, ROLE_NEG, ROLE_SI, ROLE_BACKUP)


@dataclass
class IOIScores:
    """The IOI step's output: head columns (one row per head, layer/head + METRICS and their CIs), the roles each
    head holds, and the record (applicable, why, baseline, prompts)."""

    frame: pd.DataFrame
    held: list[list[str]]
    record: dict[str, Any] = field(default_factory=dict)


def pair_means(x: torch.Tensor) -> torch.Tensor:
    """Average ABBA/BABA twins: [2k, ...] -> [k, ...] (rows 2j and 2j+1 are twins)."""
    return x.reshape(x.shape[0] // 2, 2, *x.shape[1:]).mean(1)


def role_holders(score: np.ndarray, lo: np.ndarray, control: np.ndarray, threshold: float) -> np.ndarray:
    """The IOI role rule: score >= threshold AND lo > control (NaN never holds). Arrays of one shape -> bool."""
    with np.errstate(invalid="ignore"):
        return (np.nan_to_num(score, nan=-np.inf) >= threshold) & (np.nan_to_num(lo, nan=-np.inf) > control)


def _grid(n_layers: int, n_heads: int) -> pd.DataFrame:
    return pd.MultiIndex.from_product([range(n_layers), range(n_heads)], names=["layer", "head"]).to_frame(index=False)


def _put(frame: pd.DataFrame, name: str, per_pair: torch.Tensor | None, n_boot: int, seed: int, ci: bool = True) -> None:
    """Bootstrap per-pair values [k, L, H] into name, name_lo, name_hi (NaN where per_pair is NaN or None)."""
    if per_pair is None:
        cols = [name] + ([f"{name}_lo", f"{name}_hi"] if ci else [])
        for c in cols:
            frame[c] = np.nan
        return
    mean, lo, hi = bootstrap_mean_ci(per_pair, n_boot=n_boot, seed=seed)
    frame[name] = mean.reshape(-1).numpy()
    if ci:
        frame[f"{name}_lo"], frame[f"{name}_hi"] = lo.reshape(-1).numpy(), hi.reshape(-1).numpy()


def ioi_scores(loaded: Any, *, seed: int = 0, n_boot: int = 1000, n_pairs: int = DEFAULT_N_PAIRS,
               n_candidates: int = DEFAULT_N_CANDIDATES, thresholds: dict[str, float] | None = None,
               gate: bool = True) -> IOIScores:
    """Score every head of `loaded` on the IOI roles (module docstring); not applicable -> NULL columns, no roles.

    gate=False scores a model whatever its IOI baseline (tests: a planted head in a random model that cannot do IOI)."""
    info = loaded.info
    L, H = info.n_layers, info.n_heads
    frame = _grid(L, H)
    limits = {r.name: float(r.threshold or 0.0) for r in ROLES} | dict(thresholds or {})
    held: list[list[str]] = [[] for _ in range(L * H)]
    record: dict[str, Any] = {"n_pairs_requested": n_pairs, "thresholds": limits, "n_candidates": n_candidates}
    try:
        prompts = make_prompts(loaded.bridge.tokenizer, n_pairs, loaded.start.id, seed)
    except IOIUnavailable as exc:
        prompts = None
        record.update(applicable=False, why=f"not applicable: {exc}")
    if prompts is not None:
        runner = IOIRunner(loaded.bridge, prompts)
        clean = runner.run()
        ok, why = baseline_verdict(clean.ld[0])
        record.update(applicable=ok, why=why, n_prompts=prompts.n, data=prompts.describe(),
                      clean_logit_diff=float(clean.ld[0].mean()), clean_accuracy=float((clean.ld[0] > 0).float().mean()))
        if ok or not gate:
            return _score(frame, held, record, runner, clean, limits, n_boot, seed, n_candidates, L, H)
    for m in METRICS:
        _put(frame, m.name, None, n_boot, seed, ci=m.ci)
    return IOIScores(frame, held, record)


def _score(frame: pd.DataFrame, held: list[list[str]], record: dict[str, Any], runner: IOIRunner, clean: Any,
           limits: dict[str, float], n_boot: int, seed: int, n_candidates: int, L: int, H: int) -> IOIScores:
    nm = pair_means(clean.dla_io[0])  # [k, L, H]
    nm_other = pair_means(clean.dla_io_other[0])
    _put(frame, NAME_MOVER.name, nm, n_boot, seed)
    _put(frame, NEGATIVE.name, -nm, n_boot, seed)
    frame[NAME_MOVER_CONTROL.name] = nm_other.mean(0).reshape(-1).double().numpy()
    frame[NEGATIVE_CONTROL.name] = -frame[NAME_MOVER_CONTROL.name]
    _put(frame, ATTN_IO.name, pair_means(clean.attn[0][..., 0]), n_boot, seed)
    _put(frame, ATTN_S2.name, pair_means(clean.attn[0][..., 2]), n_boot, seed)

    def holds(r: Role, control: Any) -> np.ndarray:
        return role_holders(frame[r.metric].to_numpy(float), frame[f"{r.metric}_lo"].to_numpy(float), control, limits[r.name])

    is_nm = holds(ROLE_NM, frame[NAME_MOVER_CONTROL.name].to_numpy(float))
    is_neg = holds(ROLE_NEG, frame[NEGATIVE_CONTROL.name].to_numpy(float))
    movers = [(i // H, i % H) for i in np.flatnonzero(is_nm)]
    record["name_movers"] = [f"L{a}H{b}" for a, b in movers]
    si = backup = None
    if movers:
        last, first = max(a for a, _ in movers), min(a for a, _ in movers)
        s2 = frame[ATTN_S2.name].to_numpy(float).reshape(L, H)
        pool = [(a, b) for a in range(last) for b in range(H) if (a, b) not in movers]
        cands = sorted(pool, key=lambda x: -s2[x])[:n_candidates]
        specs: list[tuple[dict[int, list[int]], str]] = [({a: [b]}, "mean") for a, b in cands]
        group: dict[int, list[int]] = {}
        for a, b in movers:
            group.setdefault(a, []).append(b)
        specs.append((group, "mean"))
        run = runner.run(specs)  # replicas: each candidate alone, then every name mover together
        nm_idx = torch.tensor([a * H + b for a, b in movers])
        nm_attn = lambda attn: attn[..., 0].reshape(attn.shape[0], -1)[:, nm_idx].mean(-1)  # noqa: E731  [n]
        si = torch.full((clean.ld.shape[1] // 2, L, H), float("nan"))
        for j, (a, b) in enumerate(cands):
            si[:, a, b] = pair_means(nm_attn(clean.attn[0]) - nm_attn(run.attn[j]))
        rise = pair_means(run.dla[-1] - clean.dla[0])  # [k, L, H]
        keep = torch.zeros(L, H, dtype=torch.bool)
        keep[first + 1:] = True
        for a, b in movers:
            keep[a, b] = False
        backup = torch.where(keep, rise, torch.full_like(rise, float("nan")))
        record["s_inhibition_candidates"] = [f"L{a}H{b}" for a, b in cands]
        record["ablated_name_movers_logit_diff"] = float(run.ld[-1].mean())
    _put(frame, S_INHIBITION.name, si, n_boot, seed)
    _put(frame, BACKUP.name, backup, n_boot, seed)
    is_si = holds(ROLE_SI, np.zeros(L * H)) if si is not None else np.zeros(L * H, dtype=bool)
    is_backup = holds(ROLE_BACKUP, np.zeros(L * H)) if backup is not None else np.zeros(L * H, dtype=bool)
    for i in range(L * H):
        held[i] = [r.name for r, m in zip(ROLES, (is_nm, is_neg, is_si, is_backup)) if m[i]]
    return IOIScores(frame, held, record)


def docs(scores: IOIScores) -> dict[str, dict[str, Any]]:
    """The metric docs (description, data, n, spec) of the IOI columns; 'not applicable' said in each description."""
    rec = scores.record
    note = "" if rec.get("applicable") else f" [{rec.get('why', 'not applicable')}]"
    n = int(rec.get("n_prompts", 0)) // 2
    out = {}
    for m in METRICS:
        out[m.name] = {"description": m.description + note, "data": rec.get("data", _DATA), "n": n, "spec": m}
    return out


def role_rows(thresholds: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """The `roles` table rows of the IOI roles (held in the `roles` column)."""
    limits = {r.name: float(r.threshold or 0.0) for r in ROLES} | dict(thresholds or {})
    return [{**r.row(), "threshold": limits[r.name], "held_in": "roles"} for r in ROLES]


def add_to_frame(frame: pd.DataFrame, scores: IOIScores) -> dict[str, dict[str, Any]]:
    """Add the IOI columns to the detector pass's `frame` (one row per head, layer-major) and append each head's IOI
    roles to its `roles`, recounting `n_roles` / `multi_role`; return the docs of the added columns."""
    from headwiki.detectors.roles import MULTI_ROLE, N_ROLES, ROLES_COLUMN
    from headwiki.detectors.scoring import add_head_columns

    add_head_columns(frame, scores.frame)
    frame[ROLES_COLUMN.name] = [list(a) + list(b) for a, b in zip(frame[ROLES_COLUMN.name], scores.held)]
    frame[N_ROLES.name] = frame[ROLES_COLUMN.name].map(len).astype("int64")
    frame[MULTI_ROLE.name] = frame[N_ROLES.name] >= 2
    return docs(scores)
