"""headwiki: characterize every attention head of a transformer and publish a wiki backed by DuckDB."""

from __future__ import annotations

__version__ = "0.1.0"
