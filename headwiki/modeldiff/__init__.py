"""`headwiki diff A B`: black-box and (same structure) per-head comparison of two models (Nanda's model-diff problems)."""
