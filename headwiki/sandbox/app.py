import marimo

__generated_with = "0.25.2"
app = marimo.App(width="full", app_title="headwiki: negation ablation sandbox")


@app.cell
def _():
    import marimo as mo

    return (mo,)


@app.cell
def _(mo):
    # State lives in UI elements and the pure functions of headwiki.ablation.sandbox / headwiki.sandbox.presets:
    # every cell below derives its output from the elements' values; nothing is mutated across cells.
    from headwiki.sandbox.launch import app_args

    args = app_args(mo.cli_args())
    return (args,)


@app.cell
def _(args, mo):
    from headwiki.ablation.sandbox import Sandbox
    from headwiki.models import load_model
    from headwiki.sandbox.presets import read_tables

    with mo.status.spinner(title=f"loading {args.model} and caching its clean run on {args.dataset} ..."):
        loaded = load_model(args.model, device=args.device, bos=args.bos)
        tables = read_tables(args.db, loaded.info.name)
        sandbox = Sandbox(loaded, args.dataset, seed=args.seed, max_items=args.max_items)
    return sandbox, tables


@app.cell
def _(mo, sandbox, tables):
    from headwiki.ablation.sweep import ABLATIONS
    from headwiki.sandbox import presets as P

    _roles = list(dict.fromkeys(P.score_roles(tables) + P.label_roles(tables)))
    kind = mo.ui.dropdown(options=list(ABLATIONS), value=ABLATIONS[0], label="ablation")
    preset = mo.ui.dropdown(options=list(P.PRESETS), value=P.NO_PRESET, label="preset")
    role = mo.ui.dropdown(options={tables.role_label(r): r for r in _roles}, value=None, label="role")
    rank_kind = mo.ui.dropdown(options=list(ABLATIONS), value=ABLATIONS[0], label="Δ presets rank by")
    k = mo.ui.slider(1, sandbox.n_layers * sandbox.n_heads, value=1, label="k", show_value=True)
    layer = mo.ui.slider(0, sandbox.n_layers - 1, value=0, label="layer", show_value=True)
    mo.vstack([
        mo.md(f"## Negation ablation sandbox: **{tables.model_id}** on **{sandbox.dataset.name}** "
              f"({len(sandbox.dataset.items)} items; Δ CIs resample {sandbox.cluster_unit}s)"),
        mo.hstack([kind, preset, role, k, layer, rank_kind], justify="start", gap=1.5),
    ])
    return P, k, kind, layer, preset, rank_kind, role


@app.cell
def _(P, args, k, layer, mo, preset, rank_kind, role, sandbox, tables):
    from headwiki.db.store import head_label
    from headwiki.sandbox.launch import parse_heads

    # the grid starts from the preset, or from --heads while no preset is chosen; it does not read the ablation kind,
    # so switching zero/mean/resample keeps the toggled heads
    _start = (set(parse_heads(args.heads)) if preset.value == P.NO_PRESET else
              set(P.preset_heads(tables, preset.value, k=k.value, role=role.value, layer=layer.value, kind=rank_kind.value)))
    grid = mo.ui.array([
        mo.ui.checkbox(value=(L, h) in _start, label=head_label(L, h))
        for L in range(sandbox.n_layers) for h in range(sandbox.n_heads)
    ], label="heads to ablate")
    mo.vstack([mo.md("**Heads to ablate** (a preset sets them; toggle any)"),
               *[mo.hstack([grid[L * sandbox.n_heads + h] for h in range(sandbox.n_heads)], justify="start", gap=0.8)
                 for L in range(sandbox.n_layers)]])
    return (grid,)


@app.cell
def _(grid, sandbox):
    toggled = [(i // sandbox.n_heads, i % sandbox.n_heads) for i, on in enumerate(grid.value) if on]
    return (toggled,)


@app.cell
def _(kind, mo, sandbox, toggled):
    with mo.status.spinner(title=f"ablating {len(toggled)} head(s) ..."):
        result = sandbox.evaluate(toggled, kind.value)
    return (result,)


@app.cell
def _(mo, result):
    from headwiki.sandbox.render import result_html

    mo.Html(result_html(result))
    return


@app.cell
def _(P, kind, mo, tables, toggled):
    mo.hstack([
        mo.ui.plotly(P.heatmap(tables, kind.value, toggled)),
        mo.vstack([mo.md("**Confound panel**: what the DB says each toggled head does"),
                   mo.md("\n".join(f"- {x}" for x in P.confound_lines(tables, toggled, kind.value)) or "_no heads toggled_")]),
    ], widths=[3, 2], align="start")
    return


@app.cell
def _(mo, result):
    from headwiki.sandbox.render import flips_frame

    _flips = flips_frame(result)
    mo.vstack([mo.md(f"**Items whose answer flipped** ({len(_flips)})"),
               mo.ui.table(_flips, selection=None, page_size=10) if len(_flips) else mo.md("_none_")])
    return


if __name__ == "__main__":
    app.run()
