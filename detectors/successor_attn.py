"""Successor heads by attention (goodfire-ai/spd's ``detect_successor_heads`` score, implemented from its description).

Not a role: headwiki's successor role is the OV score (headwiki.detectors.successor). This is the attention-based
score spd uses, stored beside it so the two definitions can be compared head by head.

Data (seeded): comma-separated runs of consecutive ordinal members ``[start, e_0, ",", e_1, ",", ..., e_{n-1}]``,
the members from headwiki.ordinals (the model's single-token runs: numbers 1-20, number words, days, months,
letters); per prompt a run chosen uniformly, a length n uniform in 3..min(12, run length) and a start uniform in the
run. The random-word control prompt i has the same layout and the same n as ordinal prompt i, its members drawn
without replacement from :data:`CONTROL_WORDS` (common short English words, none ordinal) that are single tokens.

Score per head: mean attention from member k to member k-1 (two positions back, past the comma: not the previous
token) over every (k, k-1) pair of every prompt, pooled over pairs as spd pools them. ``successor_attn_signal`` =
ordinal - control. spd marks a head whose signal exceeds :data:`SPD_THRESHOLD` (0.05); headwiki only stores it.

CIs: the per-prompt means are weighted by the prompt's pair count over the mean pair count, so their mean is the
pooled mean over pairs; 95% percentile bootstrap over prompts (the weights held fixed). The signal's bootstrap is
paired: it resamples (ordinal, control) prompt pairs of equal length, the per-pair difference.

What differs from spd: headwiki's ordinal runs instead of spd's lists (numbers 1-20 instead of 0-9; a member that
is not one token breaks a run instead of being dropped from it); the model's start token at position 0 (spd's
prompts have none; every position is shifted by one); headwiki's own control word list; control lengths paired with
the ordinal prompts (spd draws them independently, uniform in 3..12).

Measured on SmolLM2-135M (scripts/spd_agreement.py, 500 prompts per condition as spd): 22 heads pass spd's rule (best
L5H8 0.449 [0.424, 0.473]) while none reaches the OV successor threshold; Spearman with the OV score -0.05 over the 270
heads, 1 head in both top 10s. The two definitions do not agree there (README).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from headwiki.batching import chunks
from headwiki.detectors.scoring import _device, add_head_columns
from headwiki.hooks import reduce_patterns
from headwiki.ordinals import SEQUENCES, OrdinalRun, ordinal_runs, single_token
from headwiki.spec import Metric, metric
from headwiki.stats import bootstrap_mean_ci

VERSION = "1"
DEFAULT_N_PROMPTS = 128  # per condition in the detect pass (spd uses 500; scripts/spd_agreement.py too)
MIN_LEN, MAX_LEN = 3, 12
SPD_THRESHOLD = 0.05
# Common short English words, none an ordinal member (headwiki.ordinals.SEQUENCES): the control's members.
CONTROL_WORDS = (
    "apple", "bread", "chair", "cloud", "door", "field", "glass", "horse", "house", "lamp", "milk", "paper", "river",
    "road", "salt", "ship", "shoe", "stone", "table", "tree", "water", "window", "wood", "bird", "fish", "book", "coat",
    "rain", "snow", "wall", "king", "ring", "song", "star", "green", "heavy", "quiet", "warm", "soft", "black", "small",
    "long", "happy", "cold", "fire", "hand", "light", "garden",
)
_SPD = "goodfire-ai/spd detect_successor_heads"
_DATA = ("comma-separated runs of 3-12 consecutive ordinal members (headwiki.ordinals), start token first; control: "
         "the same layout and lengths with common non-ordinal words")

ORDINAL = metric(Metric(
    "successor_attn", "successor (attention, spd)", "detector", "score", "attention",
    f"mean attention from ordinal member k to member k-1 (two positions back, past the comma) over every pair of "
    f"every prompt ({_SPD}'s score; not a role: headwiki's successor role is the OV score)",
    data=_DATA, ci=True, order=26))
RANDOM = metric(Metric(
    "successor_attn_random", "successor (attention, spd), random words", "control", "control", "attention",
    "the same attention from member k to member k-1 on comma-separated common non-ordinal words, prompts of the "
    "ordinal prompts' lengths (spd's random-word control)", data=_DATA, order=27))
SIGNAL = metric(Metric(
    "successor_attn_signal", "successor signal (attention, spd)", "detector", "score", "attention",
    f"ordinal minus random-word predecessor attention; paired bootstrap over (ordinal, control) prompt pairs of equal "
    f"length. spd calls a head a successor head when this exceeds {SPD_THRESHOLD}; headwiki stores it without a role "
    "(its successor role is the OV score)", data=_DATA, ci=True, direction="signed", order=28))
METRICS = (ORDINAL, RANDOM, SIGNAL)


class SuccessorAttnUnavailable(Exception):
    """The tokenizer cannot form the prompts (no ordinal run, no comma token, too few control words)."""


@dataclass(frozen=True)
class PredecessorPrompts:
    """Comma-separated prompts, right-padded. tokens [n, s]; dst, src [n, MAX_LEN - 1] (member k's position and member
    k-1's, k >= 1); valid [n, MAX_LEN - 1] bool (pairs that exist); lengths [n] members per prompt; names [n]."""

    tokens: torch.Tensor
    dst: torch.Tensor
    src: torch.Tensor
    valid: torch.Tensor
    lengths: torch.Tensor
    names: list[str]

    @property
    def n(self) -> int:
        return int(self.tokens.shape[0])

    def pair_weights(self) -> torch.Tensor:
        """[n] float64: pairs per prompt over the mean: weighting per-prompt means by it makes their mean the pooled
        mean over all pairs."""
        pairs = self.valid.sum(-1).double()
        return pairs / pairs.mean()


def predecessor_attention(patterns: torch.Tensor, dst: torch.Tensor, src: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-prompt mean attention from each dst position to its src position over the valid pairs.

    patterns: [b, n_layers, n_heads, s, s]; dst, src: [b, m] long positions; valid: [b, m] bool -> [b, n_layers,
    n_heads] (0 for a prompt without a valid pair)."""
    rows = torch.arange(patterns.shape[0], device=patterns.device)[:, None]  # [b, 1]
    vals = patterns.permute(0, 3, 4, 1, 2)[rows, dst, src]  # [b, m, L, H]
    w = valid.to(vals.dtype)[:, :, None, None]
    return (vals * w).sum(1) / w.sum(1).clamp(min=1.0)


def _layout(members: list[list[int]], comma: int, start: int, pad: int, names: list[str]) -> PredecessorPrompts:
    s = 1 + 2 * MAX_LEN - 1
    n, m = len(members), MAX_LEN - 1
    tokens = torch.full((n, s), pad, dtype=torch.long)
    dst = torch.zeros(n, m, dtype=torch.long)
    src = torch.zeros(n, m, dtype=torch.long)
    valid = torch.zeros(n, m, dtype=torch.bool)
    for i, ids in enumerate(members):
        seq = [start]
        for k, t in enumerate(ids):
            seq += ([comma] if k else []) + [t]
        tokens[i, :len(seq)] = torch.tensor(seq)
        for k in range(1, len(ids)):
            dst[i, k - 1], src[i, k - 1], valid[i, k - 1] = 1 + 2 * k, 1 + 2 * (k - 1), True
    return PredecessorPrompts(tokens, dst, src, valid, torch.tensor([len(x) for x in members]), names)


def comma_id(encode: Any) -> int:
    """The id of "," (bare first, as it follows a word in text; then with a leading space)."""
    for form in (",", " ,"):
        ids = encode(form)
        if len(ids) == 1:
            return int(ids[0])
    raise SuccessorAttnUnavailable("',' is not a single token of this tokenizer")


def make_prompts(tokenizer: Any, n: int, start_id: int, seed: int) -> tuple[PredecessorPrompts, PredecessorPrompts]:
    """(ordinal prompts, random-word control prompts), n each, control i as long as ordinal i (module docstring)."""
    encode = lambda s: list(tokenizer.encode(s, add_special_tokens=False))  # noqa: E731
    runs: list[OrdinalRun] = ordinal_runs(encode)
    if not runs:
        raise SuccessorAttnUnavailable("the tokenizer holds no single-token ordinal run (headwiki.ordinals)")
    comma = comma_id(encode)
    ordinal = {w.lower() for seq in SEQUENCES.values() for w in seq}
    words = [single_token(encode, w) for w in CONTROL_WORDS if w.lower() not in ordinal]
    pool = sorted({t for t in words if t is not None})
    if len(pool) < MAX_LEN:
        raise SuccessorAttnUnavailable(f"only {len(pool)} of the control words are single tokens (need {MAX_LEN})")
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = comma if pad is None else int(pad)  # causal attention: what follows a prompt never changes its scores
    rng = random.Random(seed)
    ords, ctrls, names = [], [], []
    for _ in range(n):
        run = rng.choice(runs)
        length = rng.randint(MIN_LEN, min(MAX_LEN, len(run.ids)))
        first = rng.randint(0, len(run.ids) - length)
        ords.append(list(run.ids[first:first + length]))
        ctrls.append(rng.sample(pool, length))
        names.append(run.name)
    return (_layout(ords, comma, start_id, pad, names),
            _layout(ctrls, comma, start_id, pad, ["random words"] * n))


@torch.inference_mode()
def prompt_scores(bridge: Any, prompts: PredecessorPrompts, batch_size: int = 64) -> torch.Tensor:
    """Per-prompt predecessor attention [n, n_layers, n_heads] (float64, CPU): batched forwards, each layer's pattern
    reduced inside its hook (headwiki.hooks.reduce_patterns). Prompts are batched in order of length and each batch
    cut to its longest prompt (causal attention: the padding after a prompt never changes its rows), in prompt order
    on return."""
    device = _device(bridge)
    order = torch.argsort(prompts.lengths, stable=True)
    out = torch.empty(prompts.n, 0, dtype=torch.float64)
    for part in chunks(prompts.n, batch_size):
        idx = order[part]
        width = 2 * int(prompts.lengths[idx].max())  # start token + n members + n - 1 commas
        dst, src, valid = (x[idx].to(device) for x in (prompts.dst, prompts.src, prompts.valid))
        red = reduce_patterns(bridge, prompts.tokens[idx, :width].to(device),
                              lambda p: {"v": predecessor_attention(p.float(), dst, src, valid)})
        v = red["v"].double().cpu()
        if out.shape[1] == 0:
            out = torch.empty(prompts.n, *v.shape[1:], dtype=torch.float64)
        out[idx] = v
    return out


@dataclass
class SuccessorAttnScores:
    """Head columns (layer, head, METRICS and their CIs) and the record (applicable, why, prompts, spd's heads)."""

    frame: pd.DataFrame
    record: dict[str, Any] = field(default_factory=dict)


def _put(frame: pd.DataFrame, m: Metric, per_prompt: torch.Tensor | None, n_boot: int, seed: int) -> None:
    cols = [m.name, *m.stat_columns]
    if per_prompt is None:
        for c in cols:
            frame[c] = np.nan
        return
    mean, lo, hi = bootstrap_mean_ci(per_prompt, n_boot=n_boot, seed=seed)
    for c, v in zip(cols, (mean, lo, hi)):
        frame[c] = v.reshape(-1).numpy()


def successor_attn_scores(loaded: Any, *, n_prompts: int = DEFAULT_N_PROMPTS, seed: int = 0, n_boot: int = 1000,
                          batch_size: int = 64) -> SuccessorAttnScores:
    """spd's attention successor score, its random-word control and their difference for every head of `loaded`
    (module docstring); NaN columns and the reason in the record where the tokenizer cannot form the prompts."""
    L, H = loaded.info.n_layers, loaded.info.n_heads
    frame = pd.MultiIndex.from_product([range(L), range(H)], names=["layer", "head"]).to_frame(index=False)
    record: dict[str, Any] = {"version": VERSION, "n_prompts_requested": n_prompts, "spd_threshold": SPD_THRESHOLD,
                              "source": _SPD}
    try:
        ords, ctrls = make_prompts(loaded.bridge.tokenizer, n_prompts, loaded.start.id, seed)
    except SuccessorAttnUnavailable as exc:
        record.update(applicable=False, why=f"not applicable: {exc}")
        for m in METRICS:
            _put(frame, m, None, n_boot, seed)
        return SuccessorAttnScores(frame, record)
    w = ords.pair_weights()[:, None, None]
    o = prompt_scores(loaded.bridge, ords, batch_size) * w
    c = prompt_scores(loaded.bridge, ctrls, batch_size) * w  # same lengths: the same weights
    _put(frame, ORDINAL, o, n_boot, seed)
    _put(frame, RANDOM, c, n_boot, seed)
    _put(frame, SIGNAL, o - c, n_boot, seed)
    sig = frame[SIGNAL.name].to_numpy()
    passing = [f"L{a}H{b}" for a, b, v in zip(frame["layer"], frame["head"], sig) if v > SPD_THRESHOLD]
    record.update(applicable=True, why="", n_prompts=ords.n, n_pairs=int(ords.valid.sum()),
                  runs=sorted(set(ords.names)), spd_heads=passing)
    return SuccessorAttnScores(frame, record)


def docs(scores: SuccessorAttnScores) -> dict[str, dict[str, Any]]:
    """The metric docs (description, data, n, spec) of the columns; 'not applicable' said in each description."""
    rec = scores.record
    note = "" if rec.get("applicable") else f" [{rec.get('why', 'not applicable')}]"
    n = int(rec.get("n_prompts", 0))
    return {m.name: {"description": m.description + note, "data": _DATA, "n": n, "spec": m} for m in METRICS}


def add_to_frame(frame: pd.DataFrame, scores: SuccessorAttnScores) -> dict[str, dict[str, Any]]:
    """Add the columns to the detector pass's `frame` (one row per head, layer-major); return their docs."""
    add_head_columns(frame, scores.frame)
    return docs(scores)
