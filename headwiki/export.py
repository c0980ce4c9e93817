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


def _site_handler(root: Path) -> type:
    """A static-file handler that serves only regular files whose real path lies inside `root`:
    no directory listings, no symlinks pointing out, no `..` (plain or percent-encoded) escaping it."""
    import http.server
    import os

    real_root = os.path.realpath(root)

    class SiteHandler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=real_root, **kwargs)  # type: ignore[arg-type]

        def send_head(self):  # noqa: ANN201 - http.server's signature
            real = os.path.realpath(self.translate_path(self.path))
            if real != real_root and not real.startswith(real_root + os.sep):
                self.send_error(404, "File not found")
                return None
            if os.path.isdir(real) and not os.path.isfile(os.path.join(real, "index.html")):
                self.send_error(404, "File not found")
                return None
            return super().send_head()

        def list_directory(self, path):  # noqa: ANN001, ANN201
            self.send_error(404, "File not found")
            return None

    return SiteHandler


def serve_site(out_dir: str | Path, port: int = 8000) -> None:
    """Serve the static site on 127.0.0.1 only (never outside the site folder), until interrupted."""
    import errno
    import http.server

    root = Path(out_dir)
    if not 0 <= port <= 65535:
        raise HeadwikiError(f"--port {port} is not a port: use 1-65535, or 0 for a free one")
    if not (root / "index.html").exists():
        raise HeadwikiError(f"no site at {root}/index.html: run `headwiki build` or `headwiki site --out {root}` first")
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _site_handler(root))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise HeadwikiError(f"port {port} on 127.0.0.1 is in use: pick another --port, or --port 0 for a free one") from None
        if exc.errno == errno.EACCES:
            raise HeadwikiError(f"port {port} needs privileges: use a port above 1023, or --port 0 for a free one") from None
        raise HeadwikiError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    with server:
        print(f"serving {root} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
