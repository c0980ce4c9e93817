"""Held-out measurements of the toy model: per-head roles, in-context loss, negation accuracy.

Metric functions are pure tensor functions; ``measure_*`` helpers run an HF
``GPT2LMHeadModel`` (eager attention, ``output_attentions=True``) on held-out probes built
from :mod:`headwiki.toy.world`. Shapes: ``B`` batch, ``Ly`` layers, ``H`` heads, ``T`` positions.

Score conventions (perfect head = 1.0):

* induction: on ``[BOS, x_1..x_L, x_1..x_L]`` mean attention from each second-copy position
  ``L + j`` to ``j + 1`` (the position after the earlier copy), averaged over the L
  second-copy positions only.
* duplicate: same probes, attention from ``L + j`` to ``j`` (the earlier copy itself).
* previous-token: held-out world text, attention from ``i`` to ``i - 1`` over ``i >= 2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

from headwiki.detectors.duplicate_token import duplicate_token_scores as duplicate_per_sequence
from headwiki.detectors.induction import induction_scores as induction_per_sequence
from headwiki.detectors.registry import BatchMeta
from headwiki.toy.world import corpus_text, n_content_words, negation_items, ordinary_vocab

# ---------------------------------------------------------------- probes


def repeated_random_tokens(n_seqs: int, span: int, seed: int, bos_id: int, first_id: int,
                           n_ordinary: int) -> Tensor:
    """Held-out induction probes: LongTensor [n_seqs, 1 + 2 * span] = ``[BOS, s, s]``.

    ``s`` holds ``span`` DISTINCT ordinary tokens (ids ``first_id .. first_id + n_ordinary - 1``),
    so "the position after the earlier copy" is unique. The random stream
    ``[seed, 424242]`` is disjoint from the training stream.
    """
    rng = np.random.default_rng([seed, 424242])
    rows = [rng.choice(n_ordinary, size=span, replace=False) + first_id for _ in range(n_seqs)]
    s = torch.tensor(np.stack(rows), dtype=torch.long)
    bos = torch.full((n_seqs, 1), bos_id, dtype=torch.long)
    return torch.cat([bos, s, s], dim=1)


# ---------------------------------------------------------------- pure metrics


def stack_attentions(attentions: tuple[Tensor, ...]) -> Tensor:
    """HF ``outputs.attentions`` (Ly tensors [B, H, T, T]) -> [B, Ly, H, T, T]."""
    return torch.stack(attentions, dim=1)


def induction_scores(pattern: Tensor, span: int) -> Tensor:
    """[B, Ly, H, T, T] on ``[BOS, s, s]`` probes -> [Ly, H] mean attention to (earlier copy + 1).

    The definition lives in headwiki.detectors.induction; this averages its per-sequence scores.
    """
    return induction_per_sequence(pattern, torch.empty(0), BatchMeta(half_len=span)).mean(0)


def duplicate_scores(pattern: Tensor, span: int) -> Tensor:
    """[B, Ly, H, T, T] on ``[BOS, s, s]`` probes -> [Ly, H] mean attention to the earlier copy itself.

    The definition lives in headwiki.detectors.duplicate_token; this averages its per-sequence scores.
    """
    return duplicate_per_sequence(pattern, torch.empty(0), BatchMeta(half_len=span)).mean(0)


def previous_token_scores(pattern: Tensor, lengths: Tensor) -> Tensor:
    """[B, Ly, H, T, T] on right-padded text -> [Ly, H] mean attention i -> i-1 over 2 <= i < len."""
    t = pattern.shape[-1]
    i = torch.arange(2, t)
    diag = pattern[..., i, i - 1]  # [B, Ly, H, T-2]
    valid = (i[None, :] < lengths[:, None]).to(pattern.dtype)  # [B, T-2]
    w = valid[:, None, None, :]
    return (diag * w).sum(dim=(0, -1)) / w.sum(dim=(0, -1))


def copy_losses(logits: Tensor, tokens: Tensor, span: int) -> tuple[float, float]:
    """Mean next-token loss predicting x_2..x_L in the first copy vs in the second copy.

    logits [B, T, V], tokens [B, 1 + 2L]. First copy: query positions 1..L-1; second copy:
    positions L+1..2L-1 (same targets x_2..x_L).
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    nll = -logp[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]  # [B, T-1], row p predicts p+1
    first = nll[:, 1:span].mean().item()
    second = nll[:, span + 1:2 * span].mean().item()
    return first, second


def two_alternative_accuracy(target_logit: Tensor, foil_logit: Tensor, want_target: bool) -> float:
    """Fraction of items where the correct candidate has the higher logit (ties count wrong)."""
    diff = target_logit - foil_logit
    return float((diff > 0).float().mean() if want_target else (diff < 0).float().mean())


# ---------------------------------------------------------------- model runners


@torch.no_grad()
def last_logits(model: GPT2LMHeadModel, tok: PreTrainedTokenizerFast, prompts: list[str],
                batch_size: int = 512) -> Tensor:
    """Logits at each prompt's last token: [N, V]. Prompts are right-padded in batches."""
    out: list[Tensor] = []
    for start in range(0, len(prompts), batch_size):
        enc = tok(prompts[start:start + batch_size], return_tensors="pt", padding=True)
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        last = enc["attention_mask"].sum(dim=1) - 1
        out.append(logits[torch.arange(len(last)), last])
    return torch.cat(out)


@dataclass(frozen=True)
class NegationResult:
    """Two-alternative accuracies and mean logit differences (target - foil) per prompt kind."""

    n_items: int
    affirmative: float
    negated: float
    control: float
    logit_diff_affirmative: float
    logit_diff_negated: float
    logit_diff_control: float


@torch.no_grad()
def measure_negation(model: GPT2LMHeadModel, tok: PreTrainedTokenizerFast, seed: int,
                     split: str = "heldout") -> NegationResult:
    """Run the :func:`negation_items` of ``split`` through ``model``."""
    items = negation_items(seed=seed, split=split)  # type: ignore[arg-type]
    vocab = tok.get_vocab()
    t_ids = torch.tensor([vocab[it["target"].strip()] for it in items])
    f_ids = torch.tensor([vocab[it["foil"].strip()] for it in items])
    res: dict[str, tuple[float, float]] = {}
    for kind in ("affirmative", "negated", "control"):
        lg = last_logits(model, tok, [it[kind] for it in items])
        tl, fl = lg.gather(1, t_ids[:, None])[:, 0], lg.gather(1, f_ids[:, None])[:, 0]
        acc = two_alternative_accuracy(tl, fl, want_target=(kind != "negated"))
        res[kind] = (acc, float((tl - fl).mean()))
    return NegationResult(len(items), res["affirmative"][0], res["negated"][0], res["control"][0],
                          res["affirmative"][1], res["negated"][1], res["control"][1])


@dataclass(frozen=True)
class HeadResult:
    """Per-head scores [Ly][H] and in-context losses on the repeated-token probes."""

    induction: list[list[float]]
    duplicate: list[list[float]]
    previous_token: list[list[float]]
    first_copy_loss: float
    second_copy_loss: float


@torch.no_grad()
def measure_heads(model: GPT2LMHeadModel, tok: PreTrainedTokenizerFast, seed: int,
                  n_seqs: int = 200, span: int = 20, n_text_sentences: int = 1600) -> HeadResult:
    """Induction / duplicate scores on held-out ``[BOS, s, s]`` probes and previous-token scores
    on held-out :func:`corpus_text` passages."""
    vocab = tok.get_vocab()
    words = ordinary_vocab()
    tokens = repeated_random_tokens(n_seqs, span, seed, vocab[tok.bos_token], vocab[words[0]],
                                    n_content_words())
    out = model(input_ids=tokens, output_attentions=True)
    pat = stack_attentions(out.attentions)
    first, second = copy_losses(out.logits, tokens, span)
    enc = tok(corpus_text(n_text_sentences, seed), return_tensors="pt", padding=True)
    out_t = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                  output_attentions=True)
    prev = previous_token_scores(stack_attentions(out_t.attentions), enc["attention_mask"].sum(1))
    return HeadResult(induction_scores(pat, span).tolist(), duplicate_scores(pat, span).tolist(),
                      prev.tolist(), first, second)
