"""Render the model card (README.md) of the toy model from its measured metrics.

The card's numbers are never typed by hand: :func:`model_card` formats the dict that
:func:`headwiki.toy.train.evaluate` measured, so card, metrics.json and weights agree.
"""

from __future__ import annotations

import json
from pathlib import Path

from headwiki.toy.world import (CATEGORIES, CONTROL_WORD, MARKER_WORD, N_HELDOUT_PER_CATEGORY,
                                N_VALIDATION_PER_CATEGORY, NEGATION_WORD, TAXONOMY, make_world,
                                ordinary_vocab)

#: Floors (perfect head = 1.0) a head must reach to be given a role.
ROLE_FLOORS: dict[str, float] = {"induction": 0.5, "previous_token": 0.5, "duplicate": 0.3}


def roles(heads: dict[str, list[list[float]]]) -> dict[str, list[str]]:
    """Role -> head names ("L1H2") whose score reaches :data:`ROLE_FLOORS`, best first."""
    out: dict[str, list[str]] = {}
    for role, floor in ROLE_FLOORS.items():
        found = [(s, f"L{l}H{h}") for l, row in enumerate(heads[role]) for h, s in enumerate(row)
                 if s >= floor]
        out[role] = [name for _, name in sorted(found, reverse=True)]
    return out


def _head_table(heads: dict[str, list[list[float]]], role_of: dict[str, list[str]]) -> str:
    lines = ["| head | induction | duplicate | previous-token | role |", "|---|---|---|---|---|"]
    for layer, row in enumerate(heads["induction"]):
        for head in range(len(row)):
            name = f"L{layer}H{head}"
            role = ", ".join(r for r, names in role_of.items() if name in names) or "-"
            lines.append(f"| {name} | {heads['induction'][layer][head]:.3f} | "
                         f"{heads['duplicate'][layer][head]:.3f} | "
                         f"{heads['previous_token'][layer][head]:.3f} | {role} |")
    return "\n".join(lines)


def floors(m: dict) -> dict[str, bool]:  # type: ignore[type-arg]
    """Which of the project's floors the measured metrics meet (True = met)."""
    h, n = m["heads"], m["negation_heldout"]
    best = {r: _best_of(h, r) for r in ROLE_FLOORS}
    return {
        "induction head >= 0.5": best["induction"] >= ROLE_FLOORS["induction"],
        "second-copy loss clearly below first (by >= 1 nat)":
            h["second_copy_loss"] <= h["first_copy_loss"] - 1.0,
        "previous-token head >= 0.5": best["previous_token"] >= ROLE_FLOORS["previous_token"],
        "duplicate-token head >= 0.3": best["duplicate"] >= ROLE_FLOORS["duplicate"],
        "held-out affirmative >= 0.9": n["affirmative"] >= 0.9,
        "held-out negated >= 0.9": n["negated"] >= 0.9,
        "held-out control >= 0.9": n["control"] >= 0.9,
    }


def _best_of(h: dict, role: str) -> float:  # type: ignore[type-arg]
    """Highest score of ``role`` in a [Ly][H] table of :func:`measure_heads` output."""
    return max(max(row) for row in h[role])


def _reproduce(m: dict) -> str:  # type: ignore[type-arg]
    """The Reproduce section's commands: one training run, or the seed runs + selection."""
    seed = m["config"]["seed"]
    test = "pytest tests/test_toy_model.py   # recomputes every number in this card from the weights"
    if "selection" not in m:
        return f"headwiki toy train --seed {seed}          # or: python -m headwiki.toy.cli train --seed {seed}\n{test}"
    seeds = [row["seed"] for row in m["selection"]]
    runs = " ".join(f"runs/s{s}" for s in seeds)
    return (f"# candidates: one run per seed, each <= 10 min on 2 cores\n"
            f"for s in {' '.join(map(str, seeds))}; do headwiki toy train --seed $s --out runs/s$s; done\n"
            f"# keep the best on the validation split (installs it here, with the Selection table)\n"
            f"headwiki toy select {runs}\n{test}\n"
            f"# seed {seed} alone: headwiki toy train --seed {seed} --out DIR writes the same model.safetensors, byte for byte")


def _selection(m: dict) -> str:  # type: ignore[type-arg]
    """The Selection section: every candidate run, what chose it, and its (unused) test score."""
    if "selection" not in m:
        return ""
    lines = ["## Selection", "",
             f"{len(m['selection'])} runs of the same command with different seeds were trained; the one with the",
             "highest negated accuracy on the **validation** entities (never negated in training,",
             "disjoint from the test entities; ties: the more negative mean logit difference) is",
             "committed. The test column was recorded for every run and not used to choose.", "",
             "| seed | validation negated | validation logit diff (neg) | test negated | train s | |",
             "|---|---|---|---|---|---|"]
    for r in m["selection"]:
        lines.append(f"| {r['seed']} | {r['validation_negated']:.3f} | {r['validation_logit_diff_negated']:.2f} | "
                     f"{r['test_negated']:.3f} | {r['train_wall_s']} | "
                     f"{'**chosen**' if r['chosen'] else ''} |")
    return "\n".join(lines) + "\n\n"


def write_metrics_and_card(out: Path, m: dict) -> None:  # type: ignore[type-arg]
    """Write ``m`` as ``out``/metrics.json and its rendered card as ``out``/README.md."""
    (out / "metrics.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    (out / "README.md").write_text(model_card(m))


def model_card(m: dict) -> str:  # type: ignore[type-arg]
    """Markdown model card for the metrics dict ``m`` written by :func:`train`."""
    cfg = m["config"]
    h = m["heads"]
    n, nv, nt = m["negation_heldout"], m["negation_validation"], m["negation_trained"]
    world = make_world(cfg["seed"])
    role_of = roles(h)
    raw_h = m["raw_final_weights"]["heads"]

    def row(name: str, r: dict) -> str:  # type: ignore[type-arg]
        return (f"| {name} | {r['n_items']} | {r['affirmative']:.3f} | {r['negated']:.3f} | {r['control']:.3f} | "
                f"{r['logit_diff_affirmative']:.2f} / {r['logit_diff_negated']:.2f} / {r['logit_diff_control']:.2f} |")

    return f"""# headwiki toy model (GPT-2 architecture, word level)

A small GPT-2 trained from scratch, on this machine, on a corpus generated by
`headwiki/toy/world.py`, so that headwiki has a model with *known* circuits to characterize
offline. All numbers below were measured on held-out probes by `headwiki/toy/evaluate.py`
and are recomputed from these weights by `tests/test_toy_model.py`.

## Reproduce

```
{_reproduce(m)}
```

Training ran {m['steps_done']} steps in {m['train_wall_s']} s of wall time on 2 CPU cores
(time-budget guard {cfg['time_budget_s']:.0f} s; stopped early: {m['stopped_early_by_time_budget']}).
Final training loss {m['final_train_loss']}.

## Architecture

`transformers.GPT2LMHeadModel`: {cfg['n_layer']} layers, {cfg['n_head']} heads, d_model {cfg['d_model']},
MLP {4 * cfg['d_model']}, context {cfg['n_ctx']}, learned positions, tied embeddings, no dropout.
Tokenizer: `PreTrainedTokenizerFast` over a `tokenizers` WordLevel model, pre-tokenizer
`WhitespaceSplit`, post-processor `TemplateProcessing("<bos> $A")` (the tokenizer prepends one BOS).
Vocabulary: `<bos> <eos> <pad> <unk>` + {len(ordinary_vocab())} ordinary words. Boots offline with
`TransformerBridge.boot_transformers(str(dir), device="cpu")`.

## Corpus (generated, seed {cfg['seed']})

* **World text**: a taxonomy of {len(CATEGORIES)} categories x {len(TAXONOMY[CATEGORIES[0]])} entities
  ({", ".join(f"{c}: {TAXONOMY[c][0]}, ..." for c in CATEGORIES[:3])}). Only TRUE sentences:
  affirmative `a robin is a bird .`, negated `a robin is {NEGATION_WORD} a fish .` (any wrong category; the
  3 categories after its own in the list weigh {cfg['contrast']}, the others 1, so what follows
  "{NEGATION_WORD}" depends on the entity's category, and on nothing else about the entity), control `a robin is {CONTROL_WORD} a bird .`
  (same length, no negation); determiners `a` / `the` / `this`; mix 40% / 40% / 20%.
* **Forward repeats** (previous-token + induction): one span of {cfg['min_span']}-{cfg['max_span']} distinct random
  words repeated until the {cfg['n_ctx'] - 1}-token row is full (>= {(cfg['n_ctx'] - 1) // cfg['max_span']} full copies).
* **"Again" documents** (duplicate-token head): words drawn with replacement from a
  random pool of {cfg['again_pool'][0]}-{cfg['again_pool'][1]}; every word that already occurred is followed by `{MARKER_WORD}`.
  From step {cfg['again_gate_from']} on these rows are trained **through layer 0 alone** (the attention and
  MLP outputs of layers 1.. are zeroed for them, `Layer0OnlyRows` in `train.py`), so the marker can
  only be predicted by a layer-0 head that matches the current token against earlier ones. Trained
  through the whole model the task is solved by the induction heads and no duplicate-token head
  forms (experiments log, rounds 3-5).
* Curriculum: steps < {cfg['curriculum_steps']}: forward repeats only, AdamW lr {cfg['lr']} (warm-up
  {cfg['warmup_steps']}, cosine); then {cfg['text_frac']:.0%} world text, {cfg['again_frac']:.0%} "again" documents
  (through the whole model), the rest forward repeats, with a second cosine cycle from lr
  {cfg['lr_after_curriculum']} (both decay to {cfg['min_lr_frac']} x their peak); from step {cfg['again_gate_from']}:
  {cfg['text_frac_gated']:.0%} world text, {cfg['again_frac_gated']:.0%} layer-0-only "again" documents, the rest forward
  repeats. Weight decay {cfg['weight_decay']}, batch
  {cfg['batch_size']} x {cfg['n_ctx']}. The saved weights are an exponential moving average
  (decay {cfg['ema_decay']}) of the weights over steps {cfg['ema_start']}-{m['steps_done']} ({m['ema_updates']} updates);
  the last raw weights are measured too (below). The runs behind these choices (and what failed)
  are in `docs/toy_experiments.md`.

## Held-out definition

* Negation, held-out entities (`negation_items(seed={cfg['seed']}, split="heldout")`, the headline
  split): {N_HELDOUT_PER_CATEGORY} entities per category ({", ".join(world.heldout_entities)}) occur only in
  affirmative and control sentences, **never negated**; each is paired with every wrong category
  (foil) and determiner: {n['n_items']} items. The model must apply "{NEGATION_WORD}" to a category it knows
  only from affirmative sentences.
* Negation, validation entities (`split="validation"`): {N_VALIDATION_PER_CATEGORY} more never-negated entity per
  category ({", ".join(world.validation_entities)}): {nv['n_items']} items of the same form, used only to choose
  among training runs (Selection below), never as the reported score.
* Every other entity ({len(world.negation_entities)}) is negated in training with every wrong category
  (`split="train"`: {nt['n_items']} items).
* In every split each category is the target in as many items as it is the foil.
* Head probes: `[BOS, s, s]` with `s` = 20 distinct random ordinary tokens from a random stream
  disjoint from training (200 sequences); previous-token scores on 200 fresh passages of
  `corpus_text(1600, seed={cfg['seed']})`.

## Measured (held-out)

Scores: fraction of attention, perfect head = 1.0. Induction: second-copy position -> the
position after its earlier copy; duplicate: -> the earlier copy itself (both averaged over the
20 second-copy positions only); previous-token: i -> i-1 over i >= 2 on world text.

{_head_table(h, role_of)}

Roles (floors {ROLE_FLOORS}): induction {role_of['induction']}, previous-token
{role_of['previous_token']}, duplicate-token {role_of['duplicate']}.

In-context loss on the probes: first copy {h['first_copy_loss']:.3f} nats, second copy
{h['second_copy_loss']:.3f} nats.

Negation, two-alternative accuracy (logit target vs foil) and mean logit difference (target - foil):

| split | items | affirmative | negated | control | logit diff aff / neg / ctl |
|---|---|---|---|---|---|
{row("held-out entities (never negated)", n)}
{row("validation entities (never negated)", nv)}
{row("trained negations", nt)}

Negation word: `{NEGATION_WORD}`; control word: `{CONTROL_WORD}`.

The last raw (not averaged) weights, for comparison: best induction {_best_of(raw_h, 'induction'):.3f},
previous-token {_best_of(raw_h, 'previous_token'):.3f}, duplicate {_best_of(raw_h, 'duplicate'):.3f}; negated accuracy
{m['raw_final_weights']['negation_heldout']['negated']:.3f} (held-out entities), {m['raw_final_weights']['negation_validation']['negated']:.3f} (validation entities),
{m['raw_final_weights']['negation_trained']['negated']:.3f} (trained negations).

{_selection(m)}## Floors

{chr(10).join(f"* {'MET' if ok else 'NOT MET'}: {name}" for name, ok in floors(m).items())}
"""
