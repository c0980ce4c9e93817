"""One declaration per metric and role (headwiki.spec): a plugin detector in one file appears everywhere, and no
role or detector metric name is spelled anywhere but its declaration."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from headwiki.spec import Metric, Role, Spec

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = ("headwiki", "detectors", "ablation", "wiki", "db")
# The toy trainer's selection probe keys its own metrics.json (written at training time, shipped with the toy
# model; it reuses the detectors' functions) — a record of the checkpoint, not a headwiki column.
EXEMPT = ("headwiki/toy/",)

PLUGIN = '''
"""A plugin detector in one file: attention to the query's own position."""
import torch

from headwiki.detectors.registry import BatchMeta, Detector, register
from headwiki.spec import Metric, Role, role


def self_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """patterns [b, L, H, s, s] -> [b, L, H]: mean attention from i to i over i >= 1."""
    return torch.diagonal(patterns, dim1=-2, dim2=-1)[..., 1:].mean(-1)


METRIC = Metric("self_attention", "self-attention", "detector", "score", "attention",
                "mean attention from each position to itself", data="natural text windows", ci=True, heatmap=True,
                order=8, confound="removing the token's own information")
register(Detector(name=METRIC.name, version="1", needs="text", fn=self_scores, metrics=(METRIC,)))
role(Role("self_attender", "self-attender", "detector", METRIC.name, text="attends to its own position",
          colour="#123456", threshold=0.3))
'''


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headwiki.cli", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=900)


@pytest.mark.slow
def test_plugin_detector_in_one_file_appears_in_db_wiki_heads_and_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "hw_self_plugin.py").write_text(PLUGIN)
    db = tmp_path / "w.duckdb"
    base_env = {**os.environ, "PYTHONPATH": str(tmp_path / "plugins")}
    plain = _run(["detect", "--model", "toy", "--db", str(db), "--n-seqs", "8", "--seq-len", "8"], base_env, tmp_path)
    assert plain.returncode == 0, plain.stderr[-2000:]
    env = {**base_env, "HEADWIKI_PLUGINS": "hw_self_plugin"}
    res = _run(["detect", "--model", "toy", "--db", str(db), "--n-seqs", "8", "--seq-len", "8", "--csv"], env, tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "self_attender" in res.stdout  # the detect summary lists the new role
    con = duckdb.connect(str(db), read_only=True)
    try:
        cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name='heads'").fetchall()}
        assert {"self_attention", "self_attention_lo", "self_attention_hi", "self_attention_control"} <= cols
        label, unit, family = con.execute(
            "SELECT label, unit, family FROM metrics WHERE metric = 'self_attention'").fetchone()
        assert (label, unit, family) == ("self-attention", "attention", "detector")
        role = con.execute("SELECT metric, threshold, colour, held_in FROM roles WHERE role = 'self_attender'").fetchone()
        assert role == ("self_attention", 0.3, "#123456", "roles")
        # the role rule ran on it: every head above the threshold and its control holds it
        held = con.execute("SELECT count(*) FROM heads WHERE list_contains(roles, 'self_attender')").fetchone()[0]
        should = con.execute("SELECT count(*) FROM heads WHERE self_attention >= 0.3 AND self_attention_lo > self_attention_control"
                             ).fetchone()[0]
        assert held == should
        long = con.execute("SELECT count(*), count(lo) FROM head_metrics_long WHERE metric = 'self_attention'").fetchone()
        assert long[0] == long[1] > 0
        prints = con.execute("SELECT fingerprint, provenance FROM runs WHERE pass_name = 'detect' ORDER BY started_at").fetchall()
    finally:
        con.close()
    assert len(prints) == 2 and prints[0][0] != prints[1][0]  # the new detector changes the resume fingerprint
    code = json.loads(prints[1][1])["fingerprint_inputs"]["code"]
    assert code["spec"]["metric:self_attention"] == "1" and code["spec"]["role:self_attender"] == "1"
    assert "metric:self_attention" not in json.loads(prints[0][1])["fingerprint_inputs"]["code"]["spec"]
    # heads: the new metric is a default column and the new role filters (no plugin needed to read the DB)
    listed = _run(["heads", "--model", "toy", "--db", str(db), "--role", "self_attender", "--csv"], base_env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    header = listed.stdout.splitlines()[0].split(",")
    assert "self_attention" in header and len(listed.stdout.splitlines()) == held + 1
    # the wiki, rendered WITHOUT the plugin installed: heatmap, role page, head page
    site = _run(["site", "--db", str(db), "--out", str(tmp_path / "site")], base_env, tmp_path)
    assert site.returncode == 0, site.stderr[-2000:]
    model_page = (tmp_path / "site" / "models" / "toy" / "index.html").read_text()
    assert 'id="heat-self_attention"' in model_page and "self-attention" in model_page
    head_page = (tmp_path / "site" / "models" / "toy" / "heads" / "L0H0.html").read_text()
    assert "self-attention" in head_page
    if held:
        role_page = (tmp_path / "site" / "roles" / "self_attender.html").read_text()
        assert "attends to its own position" in role_page and "#123456" in role_page


def _declared_names() -> set[str]:
    """Every declared role and metric name — per-ablation metrics expanded for every ablation kind — except
    names that are also a table's (the `roles` column and table share one)."""
    from headwiki.ablation.sweep import ABLATIONS
    from headwiki.db.schema import MODEL_TABLES
    from headwiki.detectors.registry import default_registry
    from headwiki.spec import SPEC
    import headwiki.ablation.run  # noqa: F401  (declares the ablation metrics and the negation roles)
    import headwiki.ablation.validation  # noqa: F401  (declares the causal columns)

    default_registry()
    names = set(SPEC.roles)
    for m in SPEC.metrics.values():
        names |= {m.name, *(m.expand(a).name for a in ABLATIONS)} if m.per_ablation else {m.name}
    return names - set(MODEL_TABLES)


def _declaration_literals(tree: ast.AST) -> set[int]:
    """ids of string constants that sit inside a Metric(...) or Role(...) call: the declarations."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in ("Metric", "Role"):
            inside |= {id(n) for n in ast.walk(node) if isinstance(n, ast.Constant)}
    return inside


def test_no_role_or_detector_metric_name_is_spelled_outside_its_declaration() -> None:
    names = _declared_names()
    assert {"induction", "previous_token", "duplicate_token", "negation_supporter", "neg_acc_delta_zero", "causal_share_zero",
            "reversal_delta"} <= names  # the scan has teeth
    offenders = []
    for folder in PACKAGE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(EXEMPT):
                continue
            tree = ast.parse(path.read_text())
            allowed = _declaration_literals(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names and id(node) not in allowed:
                    offenders.append(f"{rel}:{node.lineno} {node.value!r}")
        for path in sorted((ROOT / folder).rglob("*.html")) + sorted((ROOT / folder).rglob("*.js")):
            text = path.read_text()
            for name in names:
                for m in re.finditer(rf"""(['"]){name}\1|\.{name}\b""", text):
                    offenders.append(f"{path.relative_to(ROOT).as_posix()}:{text[:m.start()].count(chr(10)) + 1} {name!r}")
    assert not offenders, "role/metric names spelled outside their declaration:\n" + "\n".join(offenders)


def test_scan_catches_a_spelled_name(tmp_path: Path) -> None:
    """The scanner itself: a literal outside a declaration is found, one inside is not."""
    src = 'from headwiki.spec import Metric\nM = Metric("induction", "x", "detector", "score", "", "d")\nX = {"induction": 1}\n'
    tree = ast.parse(src)
    allowed = _declaration_literals(tree)
    found = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value == "induction" and id(n) not in allowed]
    assert found == [3]


def test_spec_registry_rejects_conflicts_and_expands_per_ablation() -> None:
    spec = Spec()
    m = spec.add_metric(Metric("x_delta", "x Δ", "negation", "delta", "points", "d", ci=True, pq=True, per_ablation=True))
    assert spec.add_metric(m) is m  # re-declaring the same thing is a no-op
    with pytest.raises(ValueError, match="different metric"):
        spec.add_metric(Metric("x_delta", "other", "negation", "delta", "points", "d"))
    col = spec.metric("x_delta_mean", ("zero", "mean"))
    assert col is not None and col.name == "x_delta_mean" and col.label == "x Δ (mean ablation)"
    assert col.stat_columns == ("x_delta_mean_lo", "x_delta_mean_hi", "x_delta_mean_p", "x_delta_mean_q")
    assert spec.metric("x_delta_other", ("zero",)) is None
    with pytest.raises(ValueError, match="unit"):
        Metric("y", "y", "detector", "score", "furlongs", "d")
    r = spec.add_role(Role("r", "r", "detector", "x_delta", "does r", "#000000", threshold=0.5))
    assert spec.versions() == {"metric:x_delta": "1", "role:r": "1"} and r.row()["role"] == "r"
