"""Train the toy GPT-2 on the generated toy-world corpus and write an HF model directory.

One call of :func:`train` = one reproducible run: ``torch.manual_seed(seed)``, a single numpy
stream ``default_rng([seed, 1])`` for the data order, 2 CPU threads. A time-budget guard stops
early (and says so in ``metrics.json``) if the machine is much slower than expected.

Curriculum (see the model card and ``docs/toy_experiments.md`` for the runs behind each choice):
  1. steps < ``curriculum_steps``: only forward-repeat documents (one random span repeated until
     the row is full), at a low learning rate: a previous-token head and an induction head form
     together within ~500-750 steps. Mixing other data in from the start, skip documents, or
     multi-segment documents with gaps gave offset-2 copy heads or positional heads instead.
  2. afterwards, with a second (higher) learning-rate cycle: world text, "again" documents and
     forward repeats;
  3. from ``again_gate_from`` on (once the previous-token head is sharp on world text), more
     "again" documents, trained through layer 0 alone (:class:`Layer0OnlyRows` zeroes the later
     blocks' attention and MLP outputs for those rows): the only way left to predict the marker
     is a layer-0 head that matches the current token against earlier ones, a duplicate-token
     head. Through the full model the task is solved by the induction heads instead (attention
     to the position after the earlier copy) and no duplicate-token head forms; gating from the
     start of stage 2 kept the previous-token head blurred (docs/toy_experiments.md, round 5).
The saved weights are an exponential moving average of the trained weights from ``ema_start``
on: held-out negation accuracy swings by +-0.1 between evaluations late in training, and the
average was better on held-out (entity, wrong category) pairs, a split of an earlier world, in
every run that compared them (+0.06..+0.16). The
average is a side copy: it does not change the training trajectory.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import GPT2Config, GPT2LMHeadModel

from headwiki.atomic_dir import check_replaceable, replaced_dir
from headwiki.toy.card import roles, write_metrics_and_card
from headwiki.toy.config import TrainConfig
from headwiki.toy.evaluate import measure_heads, measure_negation
from headwiki.toy.tokenizer import build_tokenizer, n_special, vocab
from headwiki.toy.world import (BOS, EOS, PAD, World, again_tokens, make_world,
                                marker_index, n_content_words, repeat_tokens, sample_sentence)

# ---------------------------------------------------------------- data


def _synthetic_ids(rng: np.random.Generator, length: int, kind: str, cfg: TrainConfig) -> np.ndarray:
    """``length`` token ids (0-based ordinary-word indices, before offsetting): int64 [length].

    ``repeat``: one span of ``min_span..max_span`` distinct random content words repeated until
    the row is full (>= 2 full copies at the default spans). ``again``: an :func:`again_tokens` document.
    """
    n_words = n_content_words()
    if kind == "again":
        return again_tokens(rng, n_words, length, marker_index(), cfg.again_pool)
    span = int(rng.integers(cfg.min_span, cfg.max_span + 1))
    return repeat_tokens(rng, n_words, span, copies=-(-length // span))[:length]


def _text_ids(rng: np.random.Generator, world: World, length: int, v: dict[str, int],
              contrast: float) -> np.ndarray:
    """World sentences concatenated until ``length`` token ids (last sentence may be cut)."""
    ids: list[int] = []
    while len(ids) < length:
        ids.extend(v[w] for w in sample_sentence(rng, world, contrast).split())
    return np.asarray(ids[:length], dtype=np.int64)


def make_batch(rng: np.random.Generator, world: World, cfg: TrainConfig,
               step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch: (tokens LongTensor [batch_size, n_ctx], every row starts with BOS;
    layer0_only BoolTensor [batch_size], the gated "again" rows).

    Before ``curriculum_steps`` every row is a forward-repeat document; afterwards a row is world
    text with probability ``text_frac``, an "again" document with ``again_frac``, else a repeat
    (``*_frac_gated`` instead from ``again_gate_from`` on, where the "again" rows are flagged
    for :class:`Layer0OnlyRows`; before it no row is flagged).
    """
    v = vocab()
    first = n_special()
    rows = np.empty((cfg.batch_size, cfg.n_ctx), dtype=np.int64)
    rows[:, 0] = v[BOS]
    body = cfg.n_ctx - 1
    gated = step >= cfg.again_gate_from
    text_frac = cfg.text_frac_gated if gated else cfg.text_frac
    again_frac = cfg.again_frac_gated if gated else cfg.again_frac
    layer0_only = torch.zeros(cfg.batch_size, dtype=torch.bool)
    for b in range(cfg.batch_size):
        u = float(rng.random())
        if step < cfg.curriculum_steps:
            kind = "repeat"
        elif u < text_frac:
            kind = "text"
        elif u < text_frac + again_frac:
            kind = "again"
        else:
            kind = "repeat"
        if kind == "text":
            rows[b, 1:] = _text_ids(rng, world, body, v, cfg.contrast)
        else:
            rows[b, 1:] = _synthetic_ids(rng, body, kind, cfg) + first
        layer0_only[b] = gated and kind == "again"
    return torch.from_numpy(rows), layer0_only


# ---------------------------------------------------------------- model


def build_model(cfg: TrainConfig) -> GPT2LMHeadModel:
    """A fresh GPT-2 (learned positions, tied embeddings, no dropout, eager attention)."""
    v = vocab()
    config = GPT2Config(
        vocab_size=len(v), n_positions=cfg.n_ctx, n_embd=cfg.d_model, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_inner=4 * cfg.d_model, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=v[BOS], eos_token_id=v[EOS], pad_token_id=v[PAD],
        tie_word_embeddings=True,
    )
    config._attn_implementation = "eager"
    return GPT2LMHeadModel(config)


class Layer0OnlyRows:
    """Forward hooks that zero the attention and MLP outputs of blocks 1.. for chosen batch rows,
    so those rows are predicted by embeddings + block 0 alone (the residual passes through).

    Use as ``with gate.rows(mask): model(...)`` with ``mask`` BoolTensor [batch]; outside the
    ``with`` (evaluation, saving) the hooks do nothing.
    """

    def __init__(self, model: GPT2LMHeadModel) -> None:
        self._keep: torch.Tensor | None = None
        for block in model.transformer.h[1:]:
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                proj.register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, args: tuple[torch.Tensor, ...],
              output: torch.Tensor) -> torch.Tensor:
        """[B, T, d_model] -> the same with the chosen rows zeroed."""
        if self._keep is None:
            return output
        return output * self._keep.to(output.dtype)[:, None, None]

    @contextmanager
    def rows(self, layer0_only: torch.Tensor) -> Iterator[None]:
        """Within the block, rows where ``layer0_only`` [B] is True skip blocks 1.."""
        self._keep = None if not bool(layer0_only.any()) else ~layer0_only
        try:
            yield
        finally:
            self._keep = None


class AveragedWeights:
    """Exponential moving average of a model's parameters (float32 copies, same order)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.n_updates = 0
        self.params = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """avg <- decay * avg + (1 - decay) * current; the first update copies the current weights."""
        for avg, cur in zip(self.params, model.parameters()):
            if self.n_updates == 0:
                avg.copy_(cur)
            else:
                avg.lerp_(cur, 1.0 - self.decay)
        self.n_updates += 1

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Overwrite ``model``'s parameters with the averages."""
        for avg, cur in zip(self.params, model.parameters()):
            cur.copy_(avg)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, cosine decay from ``lr``; from ``curriculum_steps`` on, a second cosine cycle
    from ``lr_after_curriculum`` (both decay to ``min_lr_frac`` x their peak at ``steps``)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if step >= cfg.curriculum_steps:
        t = (step - cfg.curriculum_steps) / max(1, cfg.steps - cfg.curriculum_steps)
        peak = cfg.lr_after_curriculum
        return peak * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def evaluate(model: GPT2LMHeadModel, seed: int, full: bool = True) -> dict[str, object]:
    """Held-out measurements as a JSON-able dict (model put in eval mode).

    ``full=False`` (used for progress logs) skips the trained negation split.
    """
    model.eval()
    tok = build_tokenizer()
    heads = measure_heads(model, tok, seed)
    out: dict[str, object] = {"heads": asdict(heads),
                              "negation_heldout": asdict(measure_negation(model, tok, seed)),
                              "negation_validation": asdict(measure_negation(model, tok, seed, "validation"))}
    if full:
        out["negation_trained"] = asdict(measure_negation(model, tok, seed, "train"))
        out["roles"] = roles(out["heads"])  # type: ignore[arg-type]
    return out


def _best(scores: list[list[float]]) -> tuple[str, float]:
    """Name ("L1H2") and value of the highest score in a [Ly][H] table."""
    flat = [(f"L{l}H{h}", s) for l, row in enumerate(scores) for h, s in enumerate(row)]
    return max(flat, key=lambda x: x[1])


def summary_line(m: dict[str, object]) -> str:
    """Compact one-line progress summary of :func:`evaluate` output."""
    h = m["heads"]
    n, v = m["negation_heldout"], m["negation_validation"]
    assert isinstance(h, dict) and isinstance(n, dict) and isinstance(v, dict)
    ind, dup, prev = _best(h["induction"]), _best(h["duplicate"]), _best(h["previous_token"])
    return (f"ind {ind[0]}={ind[1]:.2f} dup {dup[0]}={dup[1]:.2f} prev {prev[0]}={prev[1]:.2f} "
            f"loss1/2 {h['first_copy_loss']:.2f}/{h['second_copy_loss']:.2f} "
            f"neg aff/neg/ctl {n['affirmative']:.2f}/{n['negated']:.2f}/{n['control']:.2f} "
            f"validation neg {v['negated']:.2f}")


def train(cfg: TrainConfig, out: Path | None = None) -> dict[str, object]:
    """Train, evaluate on held-out probes, and (if ``out``) save model + tokenizer + metrics.json.

    ``out`` is checked before training (only an absent or empty folder, or one headwiki wrote, is
    accepted) and written whole or not at all (:func:`headwiki.atomic_dir.replaced_dir`).
    Returns the metrics dict. Progress (step/total, loss, ETA) goes to stderr.
    """
    if out is not None:
        check_replaceable(out)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng([cfg.seed, 1])
    world = make_world(cfg.seed)
    model = build_model(cfg)
    gate = Layer0OnlyRows(model)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.98))
    ema = AveragedWeights(model, cfg.ema_decay)
    t0 = time.perf_counter()
    history: list[dict[str, object]] = []
    stopped_early = False
    step = 0
    checkpoints: list[tuple[int, dict[str, torch.Tensor]]] = []  # (step, raw weights), written with the run
    bar = tqdm(total=cfg.steps, file=sys.stderr, desc="toy train", dynamic_ncols=True,
               mininterval=2.0)
    for step in range(cfg.steps):
        if step and time.perf_counter() - t0 > cfg.time_budget_s:  # at least one step: a loss to report
            stopped_early = True
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        batch, layer0_only = make_batch(rng, world, cfg, step)
        with gate.rows(layer0_only):
            loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step >= cfg.ema_start:
            ema.update(model)
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
            checkpoints.append((step + 1, {k: v.detach().clone() for k, v in model.state_dict().items()}))
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
            m = evaluate(model, cfg.seed, full=False)
            model.train()
            history.append({"step": step + 1, "summary": summary_line(m)})
            tqdm.write(f"[step {step + 1}] {summary_line(m)}", file=sys.stderr)
    bar.close()
    train_s = time.perf_counter() - t0
    raw = evaluate(model, cfg.seed)
    if ema.n_updates:
        ema.copy_to(model)
    metrics = evaluate(model, cfg.seed)
    metrics.update({"ema_updates": ema.n_updates, "raw_final_weights": {k: raw[k] for k in raw if k != "roles"},
                    "config": asdict(cfg), "steps_done": step + 1 if not stopped_early else step,
                    "stopped_early_by_time_budget": stopped_early,
                    "train_wall_s": round(train_s, 1), "history": history,
                    "final_train_loss": round(float(loss.item()), 4)})
    tqdm.write(f"[final, raw weights] {summary_line(raw)}", file=sys.stderr)
    tqdm.write(f"[final, averaged weights] {summary_line(metrics)} ({train_s:.0f}s)", file=sys.stderr)
    metrics["checkpoints"] = [f"checkpoints/{checkpoint_dir_name(s)}" for s, _ in checkpoints]
    if out is not None:
        save(model, out, metrics, checkpoints, cfg)
    return metrics


def checkpoint_dir_name(step: int) -> str:
    """'step000200': zero-padded so the folders sort by step."""
    return f"step{int(step):06d}"


def save(model: GPT2LMHeadModel, out: Path, metrics: dict[str, object],
         checkpoints: list[tuple[int, dict[str, torch.Tensor]]] | None = None, cfg: TrainConfig | None = None) -> None:
    """Write config.json, model.safetensors, tokenizer files, metrics.json and the model card
    README.md (rendered from ``metrics``) into ``out``, whole or not at all; each checkpoint (step, raw weights)
    as an HF directory ``out/checkpoints/step<N>`` with the marker (series = the run folder's name, step, seed:
    :mod:`headwiki.checkpoints`) that makes it load as model ``<series>@step<N>``."""
    from headwiki.checkpoints import TOY_TRAINER, write_marker

    with replaced_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        build_tokenizer().save_pretrained(tmp)
        write_metrics_and_card(tmp, metrics)
        write_marker(tmp, seed=cfg.seed if cfg is not None else None, trainer=TOY_TRAINER)
        if checkpoints:
            write_checkpoints(tmp / "checkpoints", checkpoints, cfg or TrainConfig(), series=out.resolve().name)


def write_checkpoints(root: Path, checkpoints: list[tuple[int, dict[str, torch.Tensor]]], cfg: TrainConfig,
                      series: str) -> list[Path]:
    """Each (step, state dict) as an HF directory ``root/step<N>`` (model, tokenizer, and the marker with series,
    step and seed: :mod:`headwiki.checkpoints`). -> the directories, by step."""
    from headwiki.checkpoints import TOY_TRAINER, write_marker

    snapshot = build_model(cfg)
    out = []
    for step, state in checkpoints:
        snapshot.load_state_dict(state)
        where = root / checkpoint_dir_name(step)
        snapshot.save_pretrained(where, safe_serialization=True)
        build_tokenizer().save_pretrained(where)
        write_marker(where, series=series, step=step, seed=cfg.seed, trainer=TOY_TRAINER)
        out.append(where)
    return out
