"""The one URL helper of the site: every page has a path relative to the site root, every link is relative.

Paths never start with "/" and always name a file (``models/toy/heads/L0H1.html``), so the site works
from file:// and from any static host.
"""

from __future__ import annotations

import re
from posixpath import dirname

_UNSAFE = re.compile(r"[^a-z0-9._-]+")

INDEX = "index.html"
SQL = "sql.html"
PROVENANCE = "provenance.html"
PLOTLY_JS = "assets/plotly.min.js"
SITE_JS = "assets/site.js"
STYLE_CSS = "assets/style.css"
SEARCH_JS = "assets/search-index.js"
SQL_ENGINE_JS = "assets/sql-wasm-inline.js"  # sql.js: SQLite in WebAssembly, for the SQL page's console
SQL_CONSOLE_JS = "assets/sql-console.js"
DATA_DIR = "data"  # the tables as Parquet / CSV / JSON, and data/console/<table>.js for the console


def slug(text: str) -> str:
    """A filesystem- and URL-safe name: lowercase, [a-z0-9._-] only, never empty or dot-only."""
    out = _UNSAFE.sub("-", text.strip().lower()).strip("-.")
    return out or "model"


def model_page(model_slug: str) -> str:
    return f"models/{model_slug}/index.html"


def head_page(model_slug: str, layer: int, head: int) -> str:
    return f"models/{model_slug}/heads/L{int(layer)}H{int(head)}.html"


def role_page(role: str) -> str:
    return f"roles/{slug(role)}.html"


def root_prefix(page: str) -> str:
    """'../' once per folder level of `page` ('' for pages at the root)."""
    depth = page.count("/")
    return "../" * depth


def relative(from_page: str, to_path: str) -> str:
    """The relative link from `from_page` to `to_path` (both relative to the site root)."""
    if to_path.startswith(("/", "http:", "https:", "//")):
        raise ValueError(f"site links must be relative site paths, got {to_path!r}")
    anchor = ""
    if "#" in to_path:
        to_path, anchor = to_path.split("#", 1)
        anchor = "#" + anchor
    if dirname(from_page) and to_path.startswith(dirname(from_page) + "/"):
        return to_path[len(dirname(from_page)) + 1:] + anchor
    return root_prefix(from_page) + to_path + anchor
