"""Next-ordinal accuracy when the OV-role heads are ablated vs matched random heads (headwiki.ablation.ordinal).

usage: python scripts/ordinal_check.py --model SPEC --db DB [--kind mean|zero] [--n-random 10]
Reads the model's weight scores from DB (run `headwiki detect` first) and ablates: the labelled successor heads,
the 5 best successor-score heads (labelled or not), the labelled copy-suppression heads (top 5 and each of the top 3
alone), the top-5 copying heads.
"""

from __future__ import annotations

import argparse

import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--kind", default="mean", choices=["mean", "zero"])
    ap.add_argument("--n-random", type=int, default=10)
    ap.add_argument("--bos", default="auto")
    args = ap.parse_args()

    from headwiki.ablation.ordinal import ordinal_check, ordinal_prompts
    from headwiki.db.store import reading
    from headwiki.models import load_model

    loaded = load_model(args.model, bos=args.bos)
    info = loaded.info
    with reading(args.db) as con:
        heads = con.execute("SELECT layer, head, copying, copy_suppression, successor, roles FROM heads WHERE model_id = ?",
                            [info.name]).fetchdf()

    def top(col: str, k: int, role: str | None = None) -> list[tuple[int, int]]:
        rows = heads[[role in list(r) for r in heads["roles"]]] if role else heads
        rows = rows.sort_values(col, ascending=False).head(k)
        return [(int(L), int(h)) for L, h in zip(rows["layer"], rows["head"])]

    groups = {"successor (labelled)": top("successor", 10**6, "successor"), "successor score top 5": top("successor", 5),
              "copy suppression (labelled) top 5": top("copy_suppression", 5, "copy_suppression"),
              "copying (labelled) top 5": top("copying", 5, "copying")}
    for i, head in enumerate(top("copy_suppression", 3, "copy_suppression")):
        groups[f"copy suppression #{i + 1} alone"] = [head]
    groups = {k: v for k, v in groups.items() if v}
    prompts = ordinal_prompts(loaded.bridge.tokenizer, loaded.start.id)
    rows = ordinal_check(loaded.bridge, prompts, groups, info.n_layers, info.n_heads, kind=args.kind,
                         n_random=args.n_random)
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
