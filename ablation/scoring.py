"""Candidate scoring: tokenize prompt + candidate, sum candidate-token log-probs, LDs per condition.

Layout used everywhere in the ablation pass: every item has 3 conditions (affirmative, negated,
control; order of :data:`headwiki.ablation.items.CONDITIONS`) and 2 candidates (target, foil),
so per-item scores are ``[n_items, 3, 2]`` "slots" (flattened: ``slot = (item*3 + cond)*2 + cand``).

A *unit* is one token sequence fed to the model. When both candidates of an (item, condition) are
a single token, one unit (the prompt) scores both from its last position; otherwise there are two
units (prompt + target, prompt + foil), each scoring its own candidate's tokens. Units are sorted
by length and right-padded: with causal attention a real position never attends to a later pad,
so the scored logits equal those of the unpadded sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from headwiki.ablation.items import CONDITIONS, NegationItem
from headwiki.errors import HeadwikiError
from headwiki.start_token import StartToken

Encoder = Callable[[list[str]], list[list[int]]]


@dataclass
class Encoded:
    """Tokenized items.

    tokens [U, T] long (right-padded), lengths [U], prompt_mask [U, T] bool (prompt tokens of each
    (item, condition), counted once: the positions the mean-ablation average runs over);
    score terms [K] each: term_unit, term_pos (position whose logits predict the token), term_tok, term_slot.
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    prompt_mask: torch.Tensor
    term_unit: torch.Tensor
    term_pos: torch.Tensor
    term_tok: torch.Tensor
    term_slot: torch.Tensor
    n_items: int

    @property
    def n_units(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_slots(self) -> int:
        return self.n_items * len(CONDITIONS) * 2

    def chunk(self, units: slice) -> "Encoded":
        """The units in `units` (a slice), trimmed to their longest length, with their score terms."""
        start, stop = units.start or 0, units.stop
        keep = (self.term_unit >= start) & (self.term_unit < stop)
        width = int(self.lengths[units].max())
        return Encoded(
            tokens=self.tokens[units, :width], lengths=self.lengths[units], prompt_mask=self.prompt_mask[units, :width],
            term_unit=self.term_unit[keep] - start, term_pos=self.term_pos[keep], term_tok=self.term_tok[keep],
            term_slot=self.term_slot[keep], n_items=self.n_items,
        )

    def select(self, keep: torch.Tensor) -> "Encoded":
        """The units where keep [U] (bool) is True, in order, trimmed to their longest length, score terms renumbered."""
        idx = keep.nonzero().flatten()
        new_index = torch.full((self.n_units,), -1, dtype=torch.long, device=keep.device)
        new_index[idx] = torch.arange(len(idx), device=keep.device)
        term_keep = keep[self.term_unit]
        width = int(self.lengths[idx].max())
        return Encoded(
            tokens=self.tokens[idx, :width], lengths=self.lengths[idx], prompt_mask=self.prompt_mask[idx, :width],
            term_unit=new_index[self.term_unit[term_keep]], term_pos=self.term_pos[term_keep], term_tok=self.term_tok[term_keep],
            term_slot=self.term_slot[term_keep], n_items=self.n_items,
        )

    def to(self, device: torch.device | str) -> "Encoded":
        return Encoded(**{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()})


def bridge_encoder(bridge: object, start: StartToken | None = None) -> Encoder:
    """Tokenize like `bridge.to_tokens` (BOS policy of the model), without padding.

    start: the `--bos` start token (headwiki.start_token). None or `auto` keeps the model's own policy (its
    tokenizer's special tokens, BOS prepended where the model prepends one); any other choice tokenizes the
    text without special tokens and puts that token at position 0.
    """
    tokenizer = bridge.tokenizer  # type: ignore[attr-defined]
    cfg = bridge.cfg  # type: ignore[attr-defined]
    if tokenizer is None:
        raise HeadwikiError("the model has no tokenizer: the negation pass scores text, so load a model with one")
    if start is not None and not start.is_auto:
        def encode_with_start(texts: list[str]) -> list[list[int]]:
            return [[start.id] + list(row) for row in tokenizer(texts, add_special_tokens=False)["input_ids"]]

        return encode_with_start
    prepend = bool(getattr(cfg, "default_prepend_bos", True)) and not bool(getattr(cfg, "tokenizer_prepends_bos", True))
    bos = tokenizer.bos_token_id
    eos = tokenizer.eos_token_id
    strip_eos = bool(getattr(cfg, "tokenizer_appends_eos", False))

    def encode(texts: list[str]) -> list[list[int]]:
        ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
        out = []
        for row in ids:
            row = list(row)
            if strip_eos and row and row[-1] == eos:
                row = row[:-1]
            if prepend and bos is not None and (not row or row[0] != bos):
                row = [bos] + row
            out.append(row)
        return out

    return encode


#: A dataset whose prompt and candidate tokens are more than this fraction unknown (the tokenizer's unk token)
#: is refused: the model cannot read it, so its accuracies would measure nothing (e.g. the English items
#: through the toy model's word-level tokenizer are ~90% <unk>).
MAX_UNKNOWN_RATE = 0.2


def unknown_token_rate(items: Sequence[NegationItem], encode: Encoder, unk_id: int | None) -> float:
    """Fraction of the tokens of every (prompt + target) text that are ``unk_id`` (0.0 when there is no unk token)."""
    if unk_id is None:
        return 0.0
    rows = encode([item.prompt(c) + item.target for item in items for c in CONDITIONS])
    total = sum(len(r) for r in rows)
    return sum(tok == unk_id for r in rows for tok in r) / max(total, 1)


def check_known_tokens(items: Sequence[NegationItem], encode: Encoder, unk_id: int | None, dataset: str,
                       model: str, suggestion: str) -> float:
    """Refuse (one-line HeadwikiError) a dataset the model's tokenizer mostly cannot read; returns the unk rate."""
    rate = unknown_token_rate(items, encode, unk_id)
    if rate > MAX_UNKNOWN_RATE:
        raise HeadwikiError(
            f"dataset {dataset}: {rate:.0%} of its tokens are unknown to {model}'s tokenizer (limit {MAX_UNKNOWN_RATE:.0%}), "
            "so the model cannot read it: "
            + (f"use --dataset {suggestion} or " if suggestion != dataset else "pass ")
            + "--dataset FILE.jsonl with items in the model's vocabulary")
    return rate


def check_local_tokenizer_reads(model_dir: str, model: str, dataset: str, suggestion: str) -> None:
    """Before any pass: refuse `dataset` (a built-in name or JSONL path, not multinli) if the tokenizer saved in
    the local model directory `model_dir` cannot read it (:func:`check_known_tokens`). Loads only the tokenizer."""
    from transformers import AutoTokenizer

    from headwiki.ablation.items import resolve_dataset

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    items = resolve_dataset(dataset).items
    check_known_tokens(items, lambda texts: [list(r) for r in tokenizer(texts)["input_ids"]],
                       getattr(tokenizer, "unk_token_id", None), dataset, model, suggestion)


def encode_items(items: Sequence[NegationItem], encode: Encoder, n_ctx: int, pad_id: int = 0) -> Encoded:
    """Tokenize every (item, condition, candidate); candidate tokens = full-text tokens beyond the prompt's.

    Raises HeadwikiError (naming the item) when the prompt's tokens are not a prefix of the full
    text's tokens (the tokenizer merges across the boundary) or a sequence exceeds `n_ctx`.
    """
    prompts = [item.prompt(c) for item in items for c in CONDITIONS]
    fulls = [item.prompt(c) + cand for item in items for c in CONDITIONS for cand in (item.target, item.foil)]
    p_ids = encode(prompts)
    f_ids = encode(fulls)
    units: list[list[int]] = []
    unit_item: list[int] = []
    prompt_lens: list[int] = []
    terms: list[tuple[int, int, int, int]] = []  # (unit, pos, tok, slot)
    for i, item in enumerate(items):
        for c, cond in enumerate(CONDITIONS):
            p = p_ids[i * 3 + c]
            cands = []
            for k, cand in enumerate((item.target, item.foil)):
                full = f_ids[(i * 3 + c) * 2 + k]
                if full[: len(p)] != p or len(full) <= len(p):
                    raise HeadwikiError(
                        f"item {item.id!r} ({cond}): the tokenizer merges the prompt's last token with candidate {cand!r}, "
                        f"so its tokens cannot be scored separately: end the prompt at a word boundary and start the candidate with a space"
                    )
                cands.append(full[len(p):])
            slot0 = (i * 3 + c) * 2
            if len(cands[0]) == 1 and len(cands[1]) == 1:
                u = len(units)
                units.append(p)
                unit_item.append(i)
                prompt_lens.append(len(p))
                terms += [(u, len(p) - 1, cands[0][0], slot0), (u, len(p) - 1, cands[1][0], slot0 + 1)]
            else:
                for k in (0, 1):
                    u = len(units)
                    units.append(p + cands[k])
                    unit_item.append(i)
                    prompt_lens.append(len(p) if k == 0 else 0)  # prompt counted once for the mean
                    terms += [(u, len(p) - 1 + j, tok, slot0 + k) for j, tok in enumerate(cands[k])]
    longest = max(len(u) for u in units)
    if longest > n_ctx:
        item = items[unit_item[max(range(len(units)), key=lambda j: len(units[j]))]]
        raise HeadwikiError(f"item {item.id!r} is {longest} tokens long, over the model's context of {n_ctx}: shorten it or drop it")
    order = sorted(range(len(units)), key=lambda j: len(units[j]))
    rank = {u: r for r, u in enumerate(order)}
    tokens = torch.full((len(units), longest), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((len(units), longest), dtype=torch.bool)
    lengths = torch.zeros(len(units), dtype=torch.long)
    for r, u in enumerate(order):
        tokens[r, : len(units[u])] = torch.tensor(units[u])
        prompt_mask[r, : prompt_lens[u]] = True
        lengths[r] = len(units[u])
    t = torch.tensor(terms, dtype=torch.long)
    return Encoded(
        tokens=tokens, lengths=lengths, prompt_mask=prompt_mask,
        term_unit=torch.tensor([rank[int(u)] for u in t[:, 0]], dtype=torch.long),
        term_pos=t[:, 1], term_tok=t[:, 2], term_slot=t[:, 3], n_items=len(items),
    )


def slot_logprobs(logits: torch.Tensor, term_tok: torch.Tensor, term_slot: torch.Tensor, n_slots: int) -> torch.Tensor:
    """Sum of candidate-token log-probs per slot.

    logits [K, vocab] at the K score terms' positions; term_tok [K]; term_slot [K] -> [n_slots]
    (slots without a term in this chunk are 0, so chunks add up).
    """
    lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, term_tok[:, None]).squeeze(-1)
    return torch.zeros(n_slots, dtype=lp.dtype, device=lp.device).index_add(0, term_slot, lp)


def logit_diffs(slot_lp: torch.Tensor) -> torch.Tensor:
    """LD = logprob(target) - logprob(foil): [..., n_slots] -> [..., n_items, 3] (conditions in CONDITIONS order)."""
    lp = slot_lp.reshape(*slot_lp.shape[:-1], -1, len(CONDITIONS), 2)
    return lp[..., 0] - lp[..., 1]


def correctness(ld: torch.Tensor) -> torch.Tensor:
    """0/1 correctness [..., n_items, 3]: affirmative LD > 0, negated LD < 0, control LD > 0 (ties are wrong)."""
    return torch.stack([ld[..., 0] > 0, ld[..., 1] < 0, ld[..., 2] > 0], dim=-1).to(ld.dtype)


def sensitivity(ld: torch.Tensor) -> torch.Tensor:
    """S = LD_ctrl - LD_neg [..., n_items]: the negation-specific part of the logit difference."""
    return ld[..., 2] - ld[..., 1]


def metric_coefficients(n_items: int, metric: str) -> torch.Tensor:
    """Weights w [n_slots] with metric = w . slot_logprobs: "sens" = mean S, "neg_ld" = mean LD_neg."""
    w = torch.zeros(n_items, len(CONDITIONS), 2)
    if metric == "sens":
        w[:, 2, 0], w[:, 2, 1], w[:, 1, 0], w[:, 1, 1] = 1.0, -1.0, -1.0, 1.0
    elif metric == "neg_ld":
        w[:, 1, 0], w[:, 1, 1] = 1.0, -1.0
    else:
        raise ValueError(f"unknown metric {metric!r}")
    return (w / n_items).reshape(-1)
