"""Indirect-object-identification (IOI) prompts and measurements (Wang et al. 2022, "Interpretability in the Wild").

Prompts come from this module's own name, place, object and template lists, counterbalanced: every (template, IO,
S, place, object) draw gives an ABBA prompt ("When Mary and John went to the store, John gave a drink to") and its
BABA twin ("When John and Mary went to the store, John gave a drink to"); the answer is the indirect object (IO,
Mary), the distractor the subject (S, John, said twice: S1 and S2). Only names that are ONE token with a leading
space for the model's tokenizer are used (and places / objects that are one token), so IO and S are single logits
and every prompt of a template has one length.

Measurements (:class:`IOIRunner`, one batched forward per call):
* logit difference LD = logit(IO) - logit(S) at the last position END (= log p(IO) - log p(S), nats);
* per head at END: attention to IO, S1 and S2; the head's direct logit attribution (DLA) on IO - S of its whole
  output and of the part it moves from the IO position (attention x value x W_O), through the final norm with its
  scale frozen at the clean run's value (exact linearization; :meth:`IOIRunner.dla_direction`);
* the same under head ablations (hook_z of chosen heads set to zero or to its mean over the prompts' non-BOS
  positions), several head sets per forward (replicated batch).

Base layer: imported by the detector pass (IOI roles) and the validation pass (IOI causal signature).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from headwiki.dla import final_norm, logit_direction

NAMES: tuple[str, ...] = (
    "Mary", "John", "Tom", "James", "Anna", "Paul", "Sarah", "David", "Emma", "Peter", "Laura", "Mark", "Alice",
    "Michael", "Kate", "Daniel", "Lisa", "Robert", "Jessica", "Steven", "Rachel", "Andrew", "Linda", "Brian",
    "Susan", "Kevin", "Helen", "Jack", "Nancy", "George", "Amy", "Eric", "Julia", "Frank", "Karen", "Ryan", "Grace",
    "Adam", "Sophie", "Henry", "Diana", "Simon", "Claire", "Oliver", "Lucy", "Victor", "Martin", "Rose",
)
PLACES: tuple[str, ...] = ("store", "park", "school", "beach", "office", "hospital", "station", "garden", "restaurant",
                           "library", "market", "church", "house", "river", "museum")
OBJECTS: tuple[str, ...] = ("drink", "book", "ball", "letter", "gift", "key", "ring", "bag", "flower", "pen", "hat",
                            "cake", "phone", "card", "bottle")
# {A} and {B} are the first clause's names (ABBA: A = IO, B = S; BABA: A = S, B = IO), {C} = S (S2). No template
# starts with a name, so every name carries its leading space.
TEMPLATES: tuple[str, ...] = (
    "When {A} and {B} went to the {place}, {C} gave a {object} to",
    "After {A} and {B} went to the {place}, {C} gave a {object} to",
    "Then, {A} and {B} went to the {place}. {C} gave a {object} to",
    "While {A} and {B} were working at the {place}, {C} gave a {object} to",
    "Friends {A} and {B} found a {object} at the {place}. {C} gave the {object} to",
    "When {A} and {B} got a {object} at the {place}, {C} decided to give it to",
    "The {place} was quiet when {A} and {B} arrived. {C} handed a {object} to",
    "Yesterday {A} and {B} met at the {place}, and {C} threw a {object} to",
)
MIN_NAMES = 4
# The IOI roles are only scored on a model that does the task: mean LD at least this many nats and at least this
# share of prompts right (IO preferred). Wang et al.'s GPT-2 small: LD ~3.6 nats.
MIN_LOGIT_DIFF = 1.0
MIN_ACCURACY = 0.75
ABLATIONS: tuple[str, ...] = ("zero", "mean")


class IOIUnavailable(Exception):
    """The model's tokenizer cannot express the task (too few single-token names): the reason, in words."""


@dataclass
class IOIPrompts:
    """A counterbalanced IOI batch (rows 2k and 2k+1 are an ABBA / BABA twin pair). tokens [n, s] (start token at 0, right-padded); per prompt: END, IO, S1 and S2
    positions [n], the IO, S and a random absent name's token ids [n] (the control name), order ABBA / BABA."""

    tokens: torch.Tensor
    end: torch.Tensor
    io_pos: torch.Tensor
    s1_pos: torch.Tensor
    s2_pos: torch.Tensor
    io_tok: torch.Tensor
    s_tok: torch.Tensor
    other_tok: torch.Tensor
    texts: list[str]
    orders: list[str]
    names: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.tokens.shape[0])

    def describe(self) -> str:
        return (f"{self.n} IOI prompts ({self.n // 2} ABBA + {self.n // 2} BABA twins; {len(TEMPLATES)} templates, "
                f"{len(self.names)} single-token names; headwiki.ioi)")


def single_tokens(tokenizer: Any, words: Sequence[str]) -> dict[str, int]:
    """{word: id} for the words that are one token with a leading space and decode back to it."""
    out: dict[str, int] = {}
    for w in words:
        ids = tokenizer(" " + w, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and tokenizer.decode(ids).strip() == w:
            out[w] = int(ids[0])
    return out


def make_prompts(tokenizer: Any, n_pairs: int, start_id: int, seed: int = 0) -> IOIPrompts:
    """2 * n_pairs counterbalanced prompts (ABBA and BABA twins), deterministic in `seed`.

    Raises IOIUnavailable when fewer than MIN_NAMES names (or no place / object) are single tokens."""
    names = single_tokens(tokenizer, NAMES)
    places = list(single_tokens(tokenizer, PLACES))
    objects = list(single_tokens(tokenizer, OBJECTS))
    if len(names) < MIN_NAMES or not places or not objects:
        raise IOIUnavailable(f"the tokenizer has {len(names)} single-token names (of {len(NAMES)}), {len(places)} places and "
                             f"{len(objects)} objects; IOI needs >= {MIN_NAMES} names and one of each")
    rng = np.random.default_rng(seed)
    pool = list(names)
    rows: list[list[int]] = []
    meta: list[tuple[int, int, int, int, int, int, int]] = []
    texts, orders = [], []
    for i in range(n_pairs):
        template = TEMPLATES[i % len(TEMPLATES)]
        io, s, other = (pool[j] for j in rng.choice(len(pool), size=3, replace=False))
        place, obj = places[rng.integers(len(places))], objects[rng.integers(len(objects))]
        twins = []
        for order, (a, b) in (("ABBA", (io, s)), ("BABA", (s, io))):
            text = template.format(A=a, B=b, C=s, place=place, object=obj)
            ids = [start_id] + list(tokenizer(text, add_special_tokens=False)["input_ids"])
            io_at = [j for j, t in enumerate(ids) if t == names[io]]
            s_at = [j for j, t in enumerate(ids) if t == names[s]]
            if len(io_at) != 1 or len(s_at) != 2:  # a name merged with its neighbour: the pair is not usable
                break
            twins.append((ids, (len(ids) - 1, io_at[0], s_at[0], s_at[1], names[io], names[s], names[other]), text, order))
        if len(twins) == 2:  # both orders or neither: rows 2k, 2k+1 are twins
            for ids, m, text, order in twins:
                rows.append(ids)
                meta.append(m)
                texts.append(text)
                orders.append(order)
    if len(rows) < 2:
        raise IOIUnavailable("no IOI prompt tokenizes with its names as single tokens")
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), start_id, dtype=torch.long)
    for j, r in enumerate(rows):
        tokens[j, :len(r)] = torch.tensor(r)
    cols = torch.tensor(meta, dtype=torch.long)
    return IOIPrompts(tokens, cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3], cols[:, 4], cols[:, 5], cols[:, 6],
                      texts, orders, sorted(names))


def logit_diff(logits_end: torch.Tensor, io_tok: torch.Tensor, s_tok: torch.Tensor) -> torch.Tensor:
    """LD = logit(IO) - logit(S): logits_end [n, vocab], io_tok / s_tok [n] -> [n] (nats)."""
    return (logits_end.gather(-1, io_tok[:, None]) - logits_end.gather(-1, s_tok[:, None]))[:, 0]


Replica = Mapping[int, Sequence[int]]  # layer -> heads ablated together


@dataclass
class IOIRun:
    """One forward's measurements, per replica r and prompt i.

    ld [R, n] (nats); attn [R, n, L, H, 3] attention from END to IO, S1, S2; dla [R, n, L, H] the head's direct
    logit attribution on IO - S of its whole output at END; dla_io [R, n, L, H] the part moved from the IO position;
    dla_io_other [R, n, L, H] that part on (control name) - S."""

    ld: torch.Tensor
    attn: torch.Tensor
    dla: torch.Tensor
    dla_io: torch.Tensor
    dla_io_other: torch.Tensor


class IOIRunner:
    """Clean and head-ablated forwards of a TransformerBridge on one IOIPrompts batch."""

    def __init__(self, bridge: Any, prompts: IOIPrompts, max_rows: int = 256) -> None:
        self.bridge = bridge
        self.p = prompts
        self.n_layers = int(bridge.cfg.n_layers)
        self.n_heads = int(bridge.cfg.n_heads)
        self.device = next(bridge.parameters()).device
        self.tokens = prompts.tokens.to(self.device)
        self.replicas = max(1, max_rows // prompts.n)
        self.W_O = bridge.W_O.detach().float()  # [L, H, dh, d]
        self.W_U = bridge.W_U.detach().float()  # [d, vocab]
        self.norm_w, self.center = final_norm(bridge)
        self.z_mean: list[torch.Tensor] | None = None  # per layer [H, dh]: mean over non-BOS, non-pad positions

    def _rows(self, n_rep: int) -> torch.Tensor:
        return torch.arange(n_rep * self.p.n, device=self.device)

    def dla_direction(self, scale: torch.Tensor, a_tok: torch.Tensor, b_tok: torch.Tensor) -> torch.Tensor:
        """Residual-stream direction d [n, d_model] with DLA(c) = c . d = the change in logit(a) - logit(b) when c is
        added to the residual at END, the final norm's scale frozen: w * (u_a - u_b) / scale, mean-centred for
        LayerNorm. scale [n] (the norm's divisor at END), a_tok / b_tok [n]."""
        return logit_direction(self.W_U, self.norm_w, scale, a_tok, b_tok, self.center)

    def _z_value(self, kind: str, layer: int, head: int) -> torch.Tensor | float:
        if kind == "zero":
            return 0.0
        if kind == "mean":
            assert self.z_mean is not None, "call run() once on the clean model first (mean ablation needs it)"
            return self.z_mean[layer][head]
        raise ValueError(f"unknown ablation {kind!r}: use one of {ABLATIONS}")

    @torch.no_grad()
    def run(self, specs: Sequence[tuple[Replica, str]] = (({}, "zero"),)) -> IOIRun:
        """Forwards with replica r ablating specs[r] (an empty replica = clean), `replicas` per forward."""
        parts = [self._run(list(specs[g:g + self.replicas])) for g in range(0, len(specs), self.replicas)]
        return IOIRun(*(torch.cat([getattr(x, f) for x in parts]) for f in ("ld", "attn", "dla", "dla_io", "dla_io_other")))

    @torch.no_grad()
    def logit_diffs(self, specs: Sequence[tuple[Replica, str]]) -> torch.Tensor:
        """LD [len(specs), n] only (no attention or DLA captured): the causal check's forwards."""
        from headwiki.hooks import z_hook

        out = []
        for g in range(0, len(specs), self.replicas):
            group = list(specs[g:g + self.replicas])
            R, n = len(group), self.p.n

            def zh(layer: int) -> Any:
                def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:
                    for r, (replica, kind) in enumerate(group):
                        for h in replica.get(layer, ()):
                            z[r * n:(r + 1) * n, :, h, :] = self._z_value(kind, layer, h)
                    return z
                return hook

            layers = sorted({layer for replica, _ in group for layer in replica})
            rows = self._rows(R)
            end = self.p.end.to(self.device).repeat(R)
            logits = self.bridge.run_with_hooks(self.tokens.repeat(R, 1), fwd_hooks=[(z_hook(l), zh(l)) for l in layers])
            ld = logit_diff(logits[rows, end].float(), self.p.io_tok.to(self.device).repeat(R), self.p.s_tok.to(self.device).repeat(R))
            out.append(ld.reshape(R, n).cpu())
        return torch.cat(out)

    def _run(self, specs: list[tuple[Replica, str]]) -> IOIRun:
        from headwiki.hooks import pattern_hook, z_hook

        R, n, L, H = len(specs), self.p.n, self.n_layers, self.n_heads
        tokens = self.tokens.repeat(R, 1)
        rows = self._rows(R)
        rep = lambda x: x.to(self.device).repeat(R)  # noqa: E731
        end, io_pos, s1, s2 = rep(self.p.end), rep(self.p.io_pos), rep(self.p.s1_pos), rep(self.p.s2_pos)
        io_tok, s_tok, other = rep(self.p.io_tok), rep(self.p.s_tok), rep(self.p.other_tok)
        attn = torch.zeros(R * n, L, H, 3, device=self.device)
        a_io = torch.zeros(R * n, L, H, device=self.device)
        z_end = torch.zeros(R * n, L, H, self.W_O.shape[2], device=self.device)
        v_io = torch.zeros(R * n, L, H, self.W_O.shape[2], device=self.device)
        z_all: list[torch.Tensor] = []
        capture_mean = self.z_mean is None

        def pat(layer: int) -> Any:
            def hook(pattern: torch.Tensor, hook: Any) -> None:
                at = pattern[rows, :, end].float()  # [R*n, H, s]
                attn[:, layer] = torch.stack([at[rows, :, io_pos], at[rows, :, s1], at[rows, :, s2]], -1)
                a_io[:, layer] = at[rows, :, io_pos]
            return hook

        def zh(layer: int) -> Any:
            def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:
                for r, (replica, kind) in enumerate(specs):
                    for h in replica.get(layer, ()):
                        z[r * n:(r + 1) * n, :, h, :] = self._z_value(kind, layer, h)
                z_end[:, layer] = z[rows, end].float()
                if capture_mean:
                    z_all.append(z.detach())
                return z
            return hook

        def vh(layer: int) -> Any:
            def hook(v: torch.Tensor, hook: Any) -> None:
                if v.dim() == 3:  # [b, s, n_kv * dh] before the per-head reshape
                    v = v.reshape(v.shape[0], v.shape[1], -1, self.W_O.shape[2])
                vv = v[rows, io_pos].float()  # [R*n, H or n_kv, dh]
                if vv.shape[1] != H:  # grouped-query attention: query head h reads KV head h // (H / n_kv)
                    vv = vv.repeat_interleave(H // vv.shape[1], dim=1)
                v_io[:, layer] = vv
            return hook

        scale = torch.zeros(R * n, device=self.device)

        def sh(t: torch.Tensor, hook: Any) -> None:
            scale.copy_(t[rows, end].reshape(R * n).float())

        hooks = [(pattern_hook(l), pat(l)) for l in range(L)] + [(z_hook(l), zh(l)) for l in range(L)]
        hooks += [(f"blocks.{l}.attn.v.hook_out", vh(l)) for l in range(L)] + [("ln_final.hook_scale", sh)]
        logits = self.bridge.run_with_hooks(tokens, fwd_hooks=hooks)
        ld = logit_diff(logits[rows, end].float(), io_tok, s_tok)
        if capture_mean:
            mask = self.p.tokens != self.p.tokens[0, 0]  # not BOS / padding
            mask[:, 0] = False
            m = mask.to(self.device)
            self.z_mean = [z[:n][m].float().mean(0) for z in z_all]  # [H, dh] (the first replica; clean when empty)
        d = self.dla_direction(scale, io_tok, s_tok)  # [R*n, d_model]
        d_other = self.dla_direction(scale, other, s_tok)
        wd = torch.einsum("lhkd,nd->nlhk", self.W_O, d)  # W_O read on the direction: [R*n, L, H, dh]
        wd_other = torch.einsum("lhkd,nd->nlhk", self.W_O, d_other)
        dla = (z_end * wd).sum(-1)
        dla_io = (v_io * wd).sum(-1) * a_io
        dla_io_other = (v_io * wd_other).sum(-1) * a_io
        shape = lambda x: x.reshape(R, n, *x.shape[1:]).cpu()  # noqa: E731
        return IOIRun(shape(ld), shape(attn), shape(dla), shape(dla_io), shape(dla_io_other))


def baseline_verdict(ld: torch.Tensor) -> tuple[bool, str]:
    """Does the model do IOI on these prompts? (applicable, the sentence saying why). ld [n] clean LD (nats)."""
    mean, acc = float(ld.mean()), float((ld > 0).float().mean())
    words = f"clean IOI logit difference {mean:+.2f} nats, {acc:.0%} of {ld.numel()} prompts prefer IO"
    if mean >= MIN_LOGIT_DIFF and acc >= MIN_ACCURACY:
        return True, words
    return False, (f"{words}: below the bar (>= {MIN_LOGIT_DIFF} nats and >= {MIN_ACCURACY:.0%}), so the model does not do "
                   "IOI and the IOI roles are not applicable")
