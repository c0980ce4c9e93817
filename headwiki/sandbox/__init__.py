"""The negation ablation sandbox app (`headwiki sandbox`): a marimo notebook over ablation.sandbox and the DB."""
