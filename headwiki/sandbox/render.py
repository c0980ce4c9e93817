"""The sandbox's numbers as HTML and tables (pure; element ids are what tests and users' scripts read)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import pandas as pd

from headwiki.negation_rule import ALPHA, MIN_ACC_DELTA
from headwiki.negation_spec import REVERSAL

if TYPE_CHECKING:
    from headwiki.ablation.sandbox import SandboxResult

PAD = 'style="padding:0 .6em"'  # cell spacing (marimo's CSS collapses table cells)
CONDITION_KEYS = {"affirmative": "aff_acc", "negated": "neg_acc", "control": "ctrl_acc"}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def result_html(r: SandboxResult) -> str:
    """Accuracy per condition (clean and ablated, Wilson 95% CIs), paired Δ with its CI, p and verdict; S and R; headline."""
    heads = ", ".join(r.labels) or "none (the clean model)"
    v = r.verdict
    colour = "#b2182b" if v.significant else "#555"
    rows = []
    for cond, key in CONDITION_KEYS.items():
        a, c, d = r.accuracy[cond], r.clean_accuracy[cond], r.deltas[key]
        rows.append(
            f'<tr data-condition="{cond}"><td {PAD}>{cond}</td>'
            f'<td {PAD}>{_pct(c.value)} [{_pct(c.lo)}, {_pct(c.hi)}]</td>'
            f'<td {PAD} id="sandbox-acc-{cond}" data-k="{a.k}" data-n="{a.n}">{_pct(a.value)} [{_pct(a.lo)}, {_pct(a.hi)}]</td>'
            f'<td {PAD} id="sandbox-delta-{cond}">{_pts(d.delta)} [{_pts(d.lo)}, {_pts(d.hi)}]</td>'
            f"<td {PAD}>{d.p:.3g}</td><td {PAD}>{html.escape(d.verdict.word)} <small>({html.escape(d.verdict.reason)})</small></td></tr>")
    s, cs, ds = r.sensitivity, r.clean_sensitivity, r.deltas["sens"]
    rev = r.deltas[REVERSAL.name]
    return (
        f'<div id="sandbox-result" data-heads="{html.escape(",".join(r.labels))}" data-kind="{r.kind}">'
        f"<p><b>{r.kind} ablation of</b> {html.escape(heads)} — {r.n_items} items of {html.escape(r.dataset)}</p>"
        f'<p id="sandbox-verdict" style="color:{colour};font-weight:bold">negated accuracy: {html.escape(v.word)} '
        f"({html.escape(v.reason)})</p>"
        f"<table><thead><tr><th {PAD}>condition</th><th {PAD}>clean accuracy [95% Wilson]</th><th {PAD}>ablated accuracy [95% Wilson]</th>"
        f"<th {PAD}>paired Δ, points [95% CI]</th><th {PAD}>p</th><th {PAD}>verdict</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        f"<p>sensitivity S = LD<sub>ctrl</sub> − LD<sub>neg</sub>: clean {cs[0]:+.3f} [{cs[1]:+.3f}, {cs[2]:+.3f}] nats, "
        f'ablated <span id="sandbox-sens">{s[0]:+.3f} [{s[1]:+.3f}, {s[2]:+.3f}]</span>; '
        f"Δ {ds.delta:+.3f} [{ds.lo:+.3f}, {ds.hi:+.3f}] (p {ds.p:.3g}, {html.escape(ds.verdict.word)})</p>"
        f"<p>{html.escape(rev.label)}: {rev.delta:+.3f} [{rev.lo:+.3f}, {rev.hi:+.3f}] (p {rev.p:.3g}, {html.escape(rev.verdict.word)}: "
        f"{html.escape(rev.verdict.reason)})</p>"
        "<p><small>Δs are paired over the same items; CIs are cluster-bootstrap 95% intervals. Accuracy Δs under "
        f"{100 * MIN_ACC_DELTA:.0f} points or with p ≥ {ALPHA} are within noise. Each toggle is one more test: the best of many head sets is not significant by "
        "its own p.</small></p></div>")


def flips_frame(r: SandboxResult) -> pd.DataFrame:
    """One row per (item, condition) whose answer flipped: the prompt, the candidates and the LDs before and after."""
    return pd.DataFrame([{"item": f.item_id, "condition": f.condition, "prompt": f.prompt, "target": f.target, "foil": f.foil,
                          "clean LD": round(f.clean_ld, 3), "ablated LD": round(f.ablated_ld, 3),
                          "now": "correct" if f.now_correct else "wrong"} for f in r.flips],
                        columns=["item", "condition", "prompt", "target", "foil", "clean LD", "ablated LD", "now"])
