"""The IOI causal signature of the name-mover role: does ablating the labelled name movers together lower the IOI
logit difference (logit(IO) - logit(S) at END, nats) more than ablating matched random head sets?

Prompts: headwiki.ioi.make_prompts with the validation seed (not the detector's prompts). Per twin pair (ABBA and BABA
averaged), the LD under: clean; the labelled heads ablated together; each random head set (same layer multiset,
drawn by the validation pass) — zero and mean ablation (hook_z of the heads at every position set to 0 / to its mean
over the prompts' non-BOS positions). The statistics are the validation pass's (`_effect_row`: effect = share of the
clean LD removed, bootstrap CI over pairs, rank and paired sign-flip p against the random sets).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from headwiki.causal_spec import IOI_LD, HeadGroup
from headwiki.ioi import IOIRunner, IOIUnavailable, baseline_verdict, make_prompts

DEFAULT_N_PAIRS = 16
NOTE = "IOI logit difference logit(IO) - logit(S) at the last token of headwiki's IOI prompts (nats; per ABBA/BABA pair)"


def _replica(heads: Sequence[tuple[int, int]]) -> dict[int, tuple[int, ...]]:
    out: dict[int, list[int]] = {}
    for layer, h in heads:
        out.setdefault(layer, []).append(h)
    return {layer: tuple(sorted(hs)) for layer, hs in out.items()}


def ioi_signature_rows(
    loaded: Any, role: str, groups: Sequence[HeadGroup], ablations: Sequence[str], effect_row: Callable[..., dict[str, Any]],
    base: dict[str, Any], n_boot: int, n_perm: int, seed: int, n_pairs: int = DEFAULT_N_PAIRS,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """role_validation rows (one per group and ablation) for `role`'s labelled head groups vs their random sets, and a
    provenance record.

    effect_row(ablated [n], randoms [R, n], clean [n], n_boot, n_perm, seed) -> stats (the validation pass's)."""
    from headwiki.db.store import head_label

    try:
        prompts = make_prompts(loaded.bridge.tokenizer, n_pairs, loaded.start.id, seed)
    except IOIUnavailable as exc:
        return [], {"applicable": False, "why": f"not applicable: {exc}"}
    runner = IOIRunner(loaded.bridge, prompts)
    clean = runner.run()  # also fixes the mean-ablation values
    ok, why = baseline_verdict(clean.ld[0])
    record: dict[str, Any] = {"applicable": ok, "why": why, "n_prompts": prompts.n, "clean_logit_diff": float(clean.ld[0].mean())}
    if not ok or not groups:
        return [], record
    pairs = lambda x: x.reshape(*x.shape[:-1], x.shape[-1] // 2, 2).mean(-1).numpy().astype(np.float64)  # noqa: E731
    clean_pairs = pairs(clean.ld[0])
    rows = []
    for name, heads, randoms in groups:
        specs = [(_replica(h), kind) for kind in ablations for h in [heads, *randoms]]
        ld = runner.logit_diffs(specs)  # [len(specs), n]
        per = 1 + len(randoms)
        for j, kind in enumerate(ablations):
            block = pairs(ld[j * per:(j + 1) * per])
            stats = effect_row(block[0], block[1:], clean_pairs, n_boot, n_perm, seed)
            suffix = stats.pop("note_suffix", "")
            rows.append({**base, "n_seqs": len(clean_pairs), "seq_len": int(prompts.tokens.shape[1]), "ablation": kind,
                         "role": role, "signature": IOI_LD, "group_name": name, "k": len(heads),
                         "heads": [head_label(*x) for x in heads], "note": NOTE + suffix, **stats})
            record[f"ablated_logit_diff_{name}_{kind}"] = float(block[0].mean())
            record[f"random_logit_diff_{name}_{kind}"] = float(block[1:].mean()) if len(block) > 1 else None
    return rows, record
