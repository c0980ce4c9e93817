"""The diff pass: compare model B with model A (B - A everywhere) and write the diff tables in one transaction.

Black box (any two models): per-token log-prob of the same text under both — the shipped English passages
(headwiki/data/english_passages.txt), or the toy corpus when both models are toy-world models (:func:`diff_texts`),
each passage cut to `max_len` tokens after the start token; the mean difference with a bootstrap CI over
passages and the `top_k` tokens where the two differ most. Token-level comparison needs the same tokenization; when
the tokenizers split a passage differently only the per-passage means are compared (said in `note`).
Same structure (layers, heads, KV heads, d_model, d_head): per-head weight and activation differences
(headwiki.modeldiff.compute) and the per-head delta of every metric both models have in the database, with CIs.
Same structure and tokenization, on the same passages:
* direct logit attribution (headwiki.dla) of each head to the actual next token (minus the mean logit), each model
  through its own final norm with the clean scale; per passage the mean over positions; dla_a, dla_b = means over
  passages, dla_delta = B - A with a bootstrap CI over passages (paired);
* activation patching where B does better: for the `patch_heads` heads with the largest |dla_delta|, A is run with that
  one head's output z replaced by B's (every position) and patch_gain = the mean log-prob gain over the tokens where B
  beats A, patch_share = that gain / B's mean advantage on those tokens (1 = the head alone closes the gap). This reads
  naturally for models of one training run (checkpoints) or a fine-tune; between independently trained models the
  residual bases differ and a transplanted head says little.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from headwiki.db.lock import check_db_target, write_lock
from headwiki.db.schema import HEAD_KEY_COLUMNS
from headwiki.db.store import head_label, new_run_id, reading, transaction, utcnow
from headwiki.errors import HeadwikiError
from headwiki.dla import final_norm, head_dla, logit_direction
from headwiki.hooks import z_hook
from headwiki.models import LoadedModel
from headwiki.modeldiff.compute import mover_ci, qk_ov, relative_change, token_logprobs
from headwiki.progress import log, progress_task
from headwiki.stats import bootstrap_mean_ci
from headwiki.spec import STAT_SUFFIXES

UNKNOWN_NOTE = 0.2  # above this share of <unk> tokens the page says the passages are mostly unknown to the model
CI_METHOD = ("bootstrap over passages (1000 resamples) for the mean log-prob difference and the per-head DLA difference "
             "(paired); per-head metric deltas: MOVER from the two stored 95% CIs, estimates taken as independent")
DEFAULT_PATCH_HEADS = 8
HEAD_COLUMNS = ("qk_rel", "ov_rel", "act_rel", "dla_a", "dla_b", "dla_delta", "dla_delta_lo", "dla_delta_hi",
                "patch_gain", "patch_share")  # diff_heads' value columns (db/schema.py; older files get them added)


@dataclass
class DiffResult:
    model_a: str
    model_b: str
    same_structure: bool
    same_tokenizer: bool
    n_tokens: int
    mean_delta: float
    mean_delta_lo: float
    mean_delta_hi: float
    tokens: pd.DataFrame = field(default_factory=pd.DataFrame)
    heads: pd.DataFrame = field(default_factory=pd.DataFrame)
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    note: str = ""


def passages() -> list[str]:
    """The shipped English passages (blank-line separated; the license line dropped)."""
    from importlib import resources

    text = (resources.files("headwiki.data") / "english_passages.txt").read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if p.strip() and not p.lstrip().startswith("#")]


def diff_texts(a: LoadedModel, b: LoadedModel, text: str | None = None) -> tuple[str, list[str]]:
    """(text source name, passages) the diff reads: `text` as the detect pass resolves it (english | toy | hf:NAME |
    a file); None -> the toy corpus when both models are the toy model or `toy train` runs (the English passages are
    mostly <unk> to the toy tokenizer), else the shipped English passages."""
    from headwiki.checkpoints import is_toy_run
    from headwiki.detectors.data import resolve_text

    is_toy = all(m.info.source == "toy" or is_toy_run(m.info.path) for m in (a, b))
    source = resolve_text(text, is_toy, 4096)
    return source.name, source.passages


def encode(loaded: LoadedModel, text: str, max_len: int) -> torch.Tensor:
    """[1, s] token ids: the start token, then the passage's tokens (cut to max_len in all)."""
    ids = loaded.bridge.tokenizer.encode(text, add_special_tokens=False)[: max_len - 1]
    return torch.tensor([[loaded.start.id, *ids]], dtype=torch.long)


def same_structure(a: LoadedModel, b: LoadedModel) -> bool:
    keys = ("n_layers", "n_heads", "n_kv_heads", "d_model", "d_head")
    return all(getattr(a.info, k) == getattr(b.info, k) for k in keys)


SCALE_HOOK = "ln_final.hook_scale"


def _forward(loaded: LoadedModel, tokens: torch.Tensor, with_z: bool) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
    """(log-probs [s - 1], per-layer z [s, H, d_head], per-head DLA to the next token [s - 1, L, H]) of one passage
    (z and DLA only with `with_z`)."""
    bridge = loaded.bridge
    with torch.no_grad():
        if with_z:
            wanted = {z_hook(L) for L in range(loaded.info.n_layers)} | {SCALE_HOOK}
            logits, cache = bridge.run_with_cache(tokens.to(loaded.info.device), names_filter=lambda n: n in wanted)
            zs = [cache[z_hook(L)][0].detach().double().cpu() for L in range(loaded.info.n_layers)]
            dla = _dla(loaded, zs, cache[SCALE_HOOK][0, :-1].reshape(-1).double().cpu(), tokens[0, 1:])
        else:
            logits, zs, dla = bridge(tokens.to(loaded.info.device)), [], None
    return token_logprobs(logits.detach().cpu(), tokens)[0], zs, dla


def _dla(loaded: LoadedModel, zs: list[torch.Tensor], scale: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[s - 1, L, H]: each head's DLA at positions 0..s-2 on logit(next token) - mean logit (headwiki.dla)."""
    bridge = loaded.bridge
    norm_w, center = final_norm(bridge)
    direction = logit_direction(bridge.W_U.detach().double().cpu(), norm_w.double().cpu(), scale, targets.cpu(), None, center)
    W_O = bridge.W_O.detach().double().cpu()  # [L, H, dh, d]
    return torch.stack([head_dla(z[:-1], W_O[L], direction) for L, z in enumerate(zs)], dim=1)


def patch_gains(a: LoadedModel, b: LoadedModel, tokens: list[torch.Tensor], better: list[torch.Tensor],
                la: list[torch.Tensor], heads: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
    """Per head (layer, h): the mean log-prob gain of A with that head's z replaced by B's (every position), over the
    tokens where B beats A. tokens: per passage [1, s]; better: per passage bool [s - 1]; la: A's log-probs [s - 1]."""
    gains: dict[tuple[int, int], float] = {h: 0.0 for h in heads}
    n = sum(int(m.sum()) for m in better)
    if not n or not heads:
        return {h: float("nan") for h in heads}
    with progress_task(f"diff: patching {len(heads)} heads of {b.info.name} into {a.info.name}", len(tokens)) as bar:
        for toks, mask, base in zip(tokens, better, la):
            if not bool(mask.any()):
                bar.advance()
                continue
            _, zb, _ = _forward(b, toks, True)
            for L, h in heads:
                src = zb[L][:, h].to(a.info.device)

                def put(z: torch.Tensor, hook: Any, src: torch.Tensor = src, h: int = h) -> torch.Tensor:
                    z[0, :, h] = src.to(z.dtype)
                    return z

                with torch.no_grad():
                    logits = a.bridge.run_with_hooks(toks.to(a.info.device), fwd_hooks=[(z_hook(L), put)])
                lp = token_logprobs(logits.detach().cpu(), toks)[0]
                gains[(L, h)] += float((lp - base)[mask].sum())
            bar.advance()
    return {h: g / n for h, g in gains.items()}


def weight_diffs(a: LoadedModel, b: LoadedModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(qk_rel, ov_rel), each [n_layers, n_heads]: relative Frobenius change of W_QK and W_OV per head."""
    qk, ov = [], []
    for L in range(a.info.n_layers):
        mats = []
        for m in (a, b):
            attn = m.bridge.blocks[L].attn
            mats.append(qk_ov(*(getattr(attn, n).detach().double().cpu() for n in ("W_Q", "W_K", "W_V", "W_O"))))
        qk.append(relative_change(mats[0][0], mats[1][0]))
        ov.append(relative_change(mats[0][1], mats[1][1]))
    return torch.stack(qk), torch.stack(ov)


def metric_deltas(db_path: Path, model_a: str, model_b: str) -> pd.DataFrame:
    """Per head and metric both models have in `heads`: value_a, value_b, delta = b - a and its MOVER CI (NaN
    where either model has no CI for it). Empty when a model is not in the database."""
    if not db_path.exists():
        return pd.DataFrame()
    with reading(db_path) as con:
        cols = [(r[0], r[1]) for r in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'heads' ORDER BY ordinal_position").fetchall()]
        heads = con.execute("SELECT * FROM heads WHERE model_id IN (?, ?) ORDER BY model_id, layer, head",
                            [model_a, model_b]).df()
    numeric = {c for c, t in cols if c not in HEAD_KEY_COLUMNS and t.upper() in ("DOUBLE", "FLOAT", "REAL", "BIGINT", "INTEGER")}
    base = sorted(c for c in numeric if not any(c.endswith(s) and c[: -len(s)] in numeric for s in STAT_SUFFIXES))
    ha = heads[heads["model_id"] == model_a].set_index(["layer", "head"])
    hb = heads[heads["model_id"] == model_b].set_index(["layer", "head"])
    if ha.empty or hb.empty:
        return pd.DataFrame()
    rows = []
    for (L, H) in ha.index.intersection(hb.index):
        ra, rb = ha.loc[(L, H)], hb.loc[(L, H)]
        for m in base:
            a, b = ra.get(m), rb.get(m)
            if a is None or b is None or pd.isna(a) or pd.isna(b):
                continue
            lo = hi = float("nan")
            if all(f"{m}{s}" in numeric and not pd.isna(r.get(f"{m}{s}")) for s in ("_lo", "_hi") for r in (ra, rb)):
                _, lo, hi = mover_ci(float(a), float(ra[f"{m}_lo"]), float(ra[f"{m}_hi"]), float(b), float(rb[f"{m}_lo"]),
                                     float(rb[f"{m}_hi"]))
            rows.append({"layer": int(L), "head": int(H), "label": head_label(int(L), int(H)), "metric": m,
                         "value_a": float(a), "value_b": float(b), "delta": float(b) - float(a), "delta_lo": lo, "delta_hi": hi})
    return pd.DataFrame(rows)


def diff_models(a: LoadedModel, b: LoadedModel, db_path: str | Path, *, max_len: int = 128, top_k: int = 25,
                n_passages: int | None = None, seed: int = 0, patch_heads: int = DEFAULT_PATCH_HEADS,
                text: str | None = None) -> DiffResult:
    """Compare B with A (module docstring) and write model_diffs, diff_tokens, diff_heads, diff_head_metrics."""
    db_path = Path(db_path)
    check_db_target(db_path)
    if a.info.name == b.info.name:
        raise HeadwikiError(f"diff needs two different models, got {a.info.name!r} twice")
    text_name, texts = diff_texts(a, b, text)
    texts = texts[:n_passages]
    max_len = min(max_len, a.info.n_ctx, b.info.n_ctx)  # learned positions stop at n_ctx
    same = same_structure(a, b)
    unk_id = getattr(a.bridge.tokenizer, "unk_token_id", None)
    n_unk = 0
    per_passage, rows, token_rows = [], [], []
    sum_d2 = sum_a2 = None
    same_tok = True
    dla_a, dla_b, kept_tokens, kept_better, kept_la, kept_d = [], [], [], [], [], []  # per passage (same structure, tokens)
    with progress_task(f"diff {a.info.name} vs {b.info.name}", len(texts)) as bar:
        for p, text in enumerate(texts):
            ta, tb = encode(a, text, max_len), encode(b, text, max_len)
            n_unk += int((ta[0, 1:] == unk_id).sum()) if unk_id is not None else 0
            la, za, da = _forward(a, ta, same)
            lb, zb, db = _forward(b, tb, same)
            if ta.shape == tb.shape and bool((ta == tb).all()):
                d = lb - la
                per_passage.append(float(d.mean()))
                toks = a.bridge.tokenizer.convert_ids_to_tokens(ta[0].tolist())
                for i in range(d.shape[0]):
                    token_rows.append((p, i + 1, str(toks[i + 1]), " ".join(map(str, toks[max(0, i - 7): i + 1])),
                                       float(la[i]), float(lb[i]), float(d[i])))
                if same:
                    d2 = torch.stack([((zb[L] - za[L]) ** 2).sum(dim=(0, 2)) for L in range(len(za))])  # [n_layers, H]
                    a2 = torch.stack([(za[L] ** 2).sum(dim=(0, 2)) for L in range(len(za))])
                    sum_d2 = d2 if sum_d2 is None else sum_d2 + d2
                    sum_a2 = a2 if sum_a2 is None else sum_a2 + a2
                    dla_a.append(da.mean(0))  # [L, H]
                    dla_b.append(db.mean(0))
                    kept_tokens.append(ta)
                    kept_better.append(d > 0)
                    kept_la.append(la)
                    kept_d.append(d)
            else:
                same_tok = False
                per_passage.append(float(lb.mean() - la.mean()))
            rows.append((float(la.sum()), float(lb.sum()), la.numel()))
            bar.advance()
    note = "" if same_tok else ("the two tokenizers split the passages differently: only per-passage mean log-probs are "
                                "compared, no per-token differences or activation differences")
    if not same_tok:
        token_rows, sum_d2, dla_a = [], None, []
    n_text = sum(int(encode(a, t, max_len).shape[1]) - 1 for t in texts)
    if n_text and n_unk / n_text > UNKNOWN_NOTE:
        note = (note + "; " if note else "") + (f"{100 * n_unk / n_text:.0f}% of the passage tokens are unknown (<unk>) to "
                                                f"{a.info.name}'s tokenizer: the log-prob comparison says little about English")
    mean, lo, hi = (float(x) for x in bootstrap_mean_ci(torch.tensor(per_passage), n_boot=1000, seed=seed))
    n_tokens = sum(r[2] for r in rows)
    tokens = pd.DataFrame(token_rows, columns=["passage", "position", "token", "context", "logp_a", "logp_b", "delta"])
    mean_abs = float(tokens["delta"].abs().mean()) if len(tokens) else float("nan")
    if len(tokens):
        tokens = tokens.reindex(tokens["delta"].abs().sort_values(ascending=False, kind="stable").index).head(top_k)
        tokens.insert(0, "rank", range(1, len(tokens) + 1))
    heads = pd.DataFrame()
    if same:
        qk, ov = weight_diffs(a, b)
        act = (sum_d2.sqrt() / sum_a2.sqrt().clamp_min(1e-30)) if sum_d2 is not None else None
        heads = pd.DataFrame([{"layer": L, "head": H, "label": head_label(L, H), "qk_rel": float(qk[L, H]),
                               "ov_rel": float(ov[L, H]), "act_rel": float(act[L, H]) if act is not None else None}
                              for L in range(a.info.n_layers) for H in range(a.info.n_heads)])
        for col in HEAD_COLUMNS[3:]:
            heads[col] = float("nan")
        if dla_a:
            A, B = torch.stack(dla_a), torch.stack(dla_b)  # [P, L, H]
            delta, lo_d, hi_d = bootstrap_mean_ci(B - A, n_boot=1000, seed=seed)
            for col, grid in (("dla_a", A.mean(0)), ("dla_b", B.mean(0)), ("dla_delta", delta), ("dla_delta_lo", lo_d),
                              ("dla_delta_hi", hi_d)):
                heads[col] = grid.reshape(-1).double().numpy()
            order = heads["dla_delta"].abs().sort_values(ascending=False, kind="stable").index[:patch_heads]
            picked = [(int(heads.at[i, "layer"]), int(heads.at[i, "head"])) for i in order]
            gains = patch_gains(a, b, kept_tokens, kept_better, kept_la, picked)
            adv = torch.cat([d[m] for d, m in zip(kept_d, kept_better)])  # B's advantage where B beats A
            mean_adv = float(adv.mean()) if adv.numel() else float("nan")
            for i, (L, h) in zip(order, picked):
                heads.at[i, "patch_gain"] = gains[(L, h)]
                heads.at[i, "patch_share"] = gains[(L, h)] / mean_adv if mean_adv > 0 else float("nan")
    metrics = metric_deltas(db_path, a.info.name, b.info.name) if same else pd.DataFrame()
    if same and metrics.empty:
        note = (note + "; " if note else "") + "no per-head metric deltas: run `headwiki detect` on both models into this database first"
    result = DiffResult(a.info.name, b.info.name, same, same_tok, n_tokens, mean, lo, hi, tokens, heads, metrics, note)
    _write(db_path, result, a, b, rows, mean_abs, {"max_len": max_len, "top_k": top_k, "n_passages": len(texts),
                                                   "seed": seed, "patch_heads": patch_heads, "text": text_name,
                                                   "start_token_a": a.start.record(), "start_token_b": b.start.record()})
    log(f"diff {a.info.name} -> {b.info.name}: mean Δ log-prob {mean:+.4f} [{lo:+.4f}, {hi:+.4f}] nats/token over "
        f"{n_tokens} tokens" + (f"; {len(heads)} heads compared" if same else "; different structure: black-box only"))
    return result


def _write(db_path: Path, r: DiffResult, a: LoadedModel, b: LoadedModel, rows: list[tuple[float, float, int]],
           mean_abs: float, params: dict[str, Any]) -> None:
    key = {"model_a": r.model_a, "model_b": r.model_b}
    n = sum(x[2] for x in rows)
    summary = pd.DataFrame([{**key, "run_id": new_run_id(), "created_at": utcnow(), "same_structure": r.same_structure,
                             "same_tokenizer": r.same_tokenizer, "n_passages": len(rows), "n_tokens": n,
                             "mean_logp_a": sum(x[0] for x in rows) / n, "mean_logp_b": sum(x[1] for x in rows) / n,
                             "mean_delta": r.mean_delta, "mean_delta_lo": r.mean_delta_lo, "mean_delta_hi": r.mean_delta_hi,
                             "mean_abs_delta": mean_abs, "ci_method": CI_METHOD, "note": r.note or None,
                             "params": json.dumps(params, sort_keys=True)}])
    with write_lock(db_path, f"diff {r.model_a} {r.model_b}"), transaction(db_path) as con:
        for col in HEAD_COLUMNS:  # a database written before a column existed gets it
            con.execute(f"ALTER TABLE diff_heads ADD COLUMN IF NOT EXISTS {col} DOUBLE")
        for table, frame in (("model_diffs", summary), ("diff_tokens", r.tokens), ("diff_heads", r.heads),
                             ("diff_head_metrics", r.metrics)):
            con.execute(f"DELETE FROM {table} WHERE model_a = ? AND model_b = ?", [r.model_a, r.model_b])
            if len(frame):
                incoming = frame.assign(**key) if table != "model_diffs" else frame  # noqa: F841 - read by DuckDB below
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
