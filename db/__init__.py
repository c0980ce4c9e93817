"""The DuckDB store: one file, many models, one row per head in `heads`."""
