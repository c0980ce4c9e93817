"""`headwiki site`: render the static wiki from the database (no model needed)."""

from __future__ import annotations

import click

from headwiki.cli_options import db_option


@click.command("site")
@db_option
@click.option("--out", "out_dir", default="site", show_default=True, type=click.Path(file_okay=False),
              help="output directory (replaced atomically; only a directory headwiki wrote is replaced)")
def site(db_path: str, out_dir: str) -> None:
    """Render a static site (index, model, head, role, SQL and provenance pages) that works offline from file://."""
    from headwiki.wiki.render import render_site

    result = render_site(db_path, out_dir)
    click.echo(str(result.index))
