import marimo

__generated_with = "0.25.2"
app = marimo.App(width="full", app_title="headwiki: negation ablation sandbox")


@app.cell
def _():
    import os

    from headwiki.sandbox import APP_THREAD_ENV

    # what `headwiki sandbox` starts the app with, also when the notebook is opened with plain `marimo edit|run`: BLAS and
    # OpenMP threads that sleep instead of spinning (shared CPUs); effective when torch / numpy load after this cell
    for _name, _value in APP_THREAD_ENV.items():
        os.environ.setdefault(_name, _value)
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
def _(P, args, k, layer, mo, preset, rank_kind, role, tables):
    from headwiki.sandbox.launch import parse_heads

    # the toggled heads: one mo.state, set afresh from the preset (or from --heads while no preset is chosen) whenever
    # a preset control changes; the grid and the heatmap below toggle it. It does not read the ablation kind, so
    # switching zero/mean/resample keeps the toggled heads
    _start = (set(parse_heads(args.heads)) if preset.value == P.NO_PRESET else
              set(P.preset_heads(tables, preset.value, k=k.value, role=role.value, layer=layer.value, kind=rank_kind.value)))
    get_heads, set_heads = mo.state(frozenset(_start))
    return get_heads, set_heads


@app.cell
def _(get_heads, mo, sandbox, set_heads):
    from headwiki.db.store import head_label

    # checkboxes: their on_change writes the whole set (idempotent); marimo does not rerun this cell for its own write,
    # so a click keeps the page as the user left it, while a heatmap click (another cell's write) redraws the grid
    _on = get_heads()
    _cells = [(L, h) for L in range(sandbox.n_layers) for h in range(sandbox.n_heads)]
    grid = mo.ui.array([mo.ui.checkbox(value=x in _on, label=head_label(*x)) for x in _cells], label="heads to ablate",
                       on_change=lambda v: set_heads(frozenset(x for x, on in zip(_cells, v) if on)))
    mo.vstack([mo.md("**Heads to ablate** (a preset sets them; toggle any here or click / box-select / lasso cells of the heatmap)"),
               *[mo.hstack([grid[L * sandbox.n_heads + h] for h in range(sandbox.n_heads)], justify="start", gap=0.8)
                 for L in range(sandbox.n_layers)]])
    return


@app.cell
def _(get_heads):
    toggled = sorted(get_heads())
    return (toggled,)


@app.cell
def _(kind, mo, sandbox, toggled):
    _steps = sandbox.n_steps(toggled, kind.value)
    if _steps:
        with mo.status.progress_bar(total=_steps, title=f"{kind.value}-ablating {len(toggled)} head(s)",
                                    subtitle="batched forwards over every item (from the first ablated layer on)",
                                    remove_on_exit=True) as _bar:
            result = sandbox.evaluate(toggled, kind.value, on_step=_bar.update)
    else:  # memoized, or the clean model: no forward
        result = sandbox.evaluate(toggled, kind.value)
    return (result,)


@app.cell
def _(mo, result):
    from headwiki.sandbox.render import result_html

    mo.Html(result_html(result))
    return


@app.cell
def _(P, kind, mo, tables, toggled):
    # rebuilt (empty selection) whenever the toggled heads change; the next cell turns a selection into a toggle
    heatmap = mo.ui.plotly(P.heatmap(tables, kind.value, toggled))
    mo.hstack([
        mo.vstack([mo.md("**Single-head Δ from the DB**: click a cell to toggle its head; box or lasso select toggles a set"),
                   heatmap]),
        mo.vstack([mo.md("**Confound panel**: what the DB says each toggled head does"),
                   mo.md("\n".join(f"- {x}" for x in P.confound_lines(tables, toggled, kind.value)) or "_no heads toggled_")]),
    ], widths=[3, 2], align="start")
    return (heatmap,)


@app.cell
def _(P, heatmap, sandbox, set_heads):
    # a click or a selection on the heatmap toggles those heads (state write -> the heatmap cell reruns with an empty
    # selection -> this cell reruns and finds nothing to do: no loop)
    _picked = P.selected_heads(heatmap.value, sandbox.n_layers, sandbox.n_heads)
    if _picked:
        set_heads(lambda heads: P.toggle(heads, _picked))
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
