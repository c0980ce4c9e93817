"""Export every table (and the long view) of the database as Parquet files."""

from __future__ import annotations

from pathlib import Path

import duckdb

from headwiki.atomic_dir import check_replaceable, replaced_dir
from headwiki.db.store import reading
from headwiki.errors import HeadwikiError


def export_parquet(db_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Write <table>.parquet for each table into `out_dir` (write to a temp dir, then rename into place)."""
    out = check_replaceable(Path(out_dir), "--parquet")  # before reading anything
    with reading(db_path) as con:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY table_name"
        ).fetchall()]
        frames = {name: con.table(name).to_arrow_table() for name in tables}
    with replaced_dir(out, "--parquet") as tmp:
        writer = duckdb.connect(":memory:")
        written = []
        for name, table in frames.items():
            target = tmp / f"{name}.parquet"
            writer.from_arrow(table).write_parquet(str(target))  # no path pasted into SQL
            written.append(out / target.name)
        writer.close()
    return written


def serve_site(out_dir: str | Path, port: int = 8000) -> None:
    """Serve the static site on 127.0.0.1 only, until interrupted."""
    import functools
    import http.server

    root = Path(out_dir)
    if not (root / "index.html").exists():
        raise HeadwikiError(f"no site at {root}/index.html: run `headwiki build` or `headwiki site --out {root}` first")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"serving {root} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
