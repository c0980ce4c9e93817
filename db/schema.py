"""The one definition of the headwiki database schema (DDL + version).

Fixed tables are created here; passes add their metric columns to `heads` at write time with
`ALTER TABLE heads ADD COLUMN IF NOT EXISTS` (see headwiki.db.store.write_head_metrics).
"""

from __future__ import annotations

SCHEMA_VERSION = 1

# Columns of `heads` that are identity or labels, never metrics (the long view excludes them).
HEAD_KEY_COLUMNS: tuple[str, ...] = ("model_id", "layer", "head", "label")

DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS meta (
        key VARCHAR PRIMARY KEY,
        value VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS models (
        model_id VARCHAR PRIMARY KEY,
        source VARCHAR, path VARCHAR, revision VARCHAR, architecture VARCHAR,
        n_layers INTEGER, n_heads INTEGER, n_kv_heads INTEGER, d_model INTEGER, d_head INTEGER,
        n_ctx INTEGER, d_vocab INTEGER, n_params BIGINT, positional_embedding VARCHAR,
        dtype VARCHAR, device VARCHAR, added_at TIMESTAMP
    )""",
    # GGUF sources (added in schema 1; idempotent for files written before): quantization, file digest, float dtype.
    "ALTER TABLE models ADD COLUMN IF NOT EXISTS quantization VARCHAR",
    "ALTER TABLE models ADD COLUMN IF NOT EXISTS file_sha256 VARCHAR",
    "ALTER TABLE models ADD COLUMN IF NOT EXISTS dequantized_dtype VARCHAR",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY,
        model_id VARCHAR, pass_name VARCHAR, params JSON, data_hash VARCHAR, seed INTEGER, n INTEGER,
        headwiki_version VARCHAR, transformer_lens_version VARCHAR, torch_version VARCHAR,
        device VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, status VARCHAR, provenance JSON,
        fingerprint VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS heads (
        model_id VARCHAR, layer INTEGER, head INTEGER, label VARCHAR,
        PRIMARY KEY (model_id, layer, head)
    )""",
    # One row per (model, metric): what a metric column of `heads` means, for docs and the wiki.
    """CREATE TABLE IF NOT EXISTS metrics (
        model_id VARCHAR, metric VARCHAR, pass_name VARCHAR, description VARCHAR, data VARCHAR,
        n INTEGER, run_id VARCHAR,
        PRIMARY KEY (model_id, metric)
    )""",
    # The metric's declaration (headwiki.spec.Metric), copied by the pass that wrote it (schema 1, idempotent).
    *(f"ALTER TABLE metrics ADD COLUMN IF NOT EXISTS {c}" for c in (
        "label VARCHAR", "family VARCHAR", "kind VARCHAR", "unit VARCHAR", "direction VARCHAR", "has_ci BOOLEAN",
        "has_pq BOOLEAN", "heatmap BOOLEAN", "version VARCHAR", "sort_order INTEGER", "confound VARCHAR",
        "strong_at DOUBLE", "control_for VARCHAR")),
    # One row per (model, role): the role's declaration (headwiki.spec.Role) with the threshold the run used and the
    # `heads` column that holds it (held_in: a list of roles, or one role's name as the value).
    """CREATE TABLE IF NOT EXISTS roles (
        model_id VARCHAR, role VARCHAR, label VARCHAR, family VARCHAR, metric VARCHAR, text VARCHAR, colour VARCHAR,
        threshold DOUBLE, rule VARCHAR, control VARCHAR, consequence VARCHAR, signatures VARCHAR[],
        no_signature VARCHAR, citation VARCHAR, version VARCHAR, sort_order INTEGER, held_in VARCHAR, run_id VARCHAR,
        PRIMARY KEY (model_id, role)
    )""",
    # Random-init control scores per architecture signature, used for role decisions.
    """CREATE TABLE IF NOT EXISTS controls (
        arch_key VARCHAR, metric VARCHAR, layer INTEGER, head INTEGER, value DOUBLE, run_id VARCHAR,
        PRIMARY KEY (arch_key, metric, layer, head)
    )""",
    # Example attention patterns stored at build time so the site needs no model.
    """CREATE TABLE IF NOT EXISTS head_examples (
        model_id VARCHAR, layer INTEGER, head INTEGER, kind VARCHAR,
        tokens VARCHAR[], pattern DOUBLE[][],
        PRIMARY KEY (model_id, layer, head, kind)
    )""",
    """CREATE TABLE IF NOT EXISTS negation_baselines (
        model_id VARCHAR, dataset VARCHAR, n_items INTEGER, condition VARCHAR,
        accuracy DOUBLE, accuracy_lo DOUBLE, accuracy_hi DOUBLE,
        mean_ld DOUBLE, mean_ld_lo DOUBLE, mean_ld_hi DOUBLE, run_id VARCHAR,
        PRIMARY KEY (model_id, dataset, condition)
    )""",
    # Added within schema version 1 (idempotent): whether a condition's baseline can carry ablation effects.
    "ALTER TABLE negation_baselines ADD COLUMN IF NOT EXISTS informative BOOLEAN",
    "ALTER TABLE negation_baselines ADD COLUMN IF NOT EXISTS note VARCHAR",
    """CREATE TABLE IF NOT EXISTS negation_items (
        model_id VARCHAR, dataset VARCHAR, item_id VARCHAR, template VARCHAR,
        affirmative VARCHAR, negated VARCHAR, control VARCHAR, target VARCHAR, foil VARCHAR,
        ld_aff DOUBLE, ld_neg DOUBLE, ld_ctrl DOUBLE, sensitivity DOUBLE,
        aff_correct BOOLEAN, neg_correct BOOLEAN, ctrl_correct BOOLEAN, run_id VARCHAR,
        PRIMARY KEY (model_id, dataset, item_id)
    )""",
    """CREATE TABLE IF NOT EXISTS negation_item_effects (
        model_id VARCHAR, dataset VARCHAR, layer INTEGER, head INTEGER, ablation VARCHAR, item_id VARCHAR,
        d_ld_aff DOUBLE, d_ld_neg DOUBLE, d_ld_ctrl DOUBLE, d_sensitivity DOUBLE,
        PRIMARY KEY (model_id, dataset, layer, head, ablation, item_id)
    )""",
    """CREATE TABLE IF NOT EXISTS negation_groups (
        model_id VARCHAR, dataset VARCHAR, group_kind VARCHAR, group_name VARCHAR, k INTEGER,
        heads VARCHAR[], ablation VARCHAR,
        neg_acc_delta DOUBLE, neg_acc_delta_lo DOUBLE, neg_acc_delta_hi DOUBLE,
        aff_acc_delta DOUBLE, aff_acc_delta_lo DOUBLE, aff_acc_delta_hi DOUBLE,
        ctrl_acc_delta DOUBLE, ctrl_acc_delta_lo DOUBLE, ctrl_acc_delta_hi DOUBLE,
        sens_delta DOUBLE, sens_delta_lo DOUBLE, sens_delta_hi DOUBLE,
        neg_acc_delta_p DOUBLE, aff_acc_delta_p DOUBLE, ctrl_acc_delta_p DOUBLE, sens_delta_p DOUBLE,
        n_items INTEGER, run_id VARCHAR,
        PRIMARY KEY (model_id, dataset, group_kind, group_name, k, ablation)
    )""",
    *(f"ALTER TABLE negation_groups ADD COLUMN IF NOT EXISTS reversal_delta{s} DOUBLE" for s in ("", "_lo", "_hi", "_p")),
    # which weights + config a model_id stands for (headwiki.models.model_fingerprint)
    "ALTER TABLE models ADD COLUMN IF NOT EXISTS fingerprint VARCHAR",
    # checkpoint series (headwiki.checkpoints): training run or hub repo, step within it, training seed (NULL otherwise)
    "ALTER TABLE models ADD COLUMN IF NOT EXISTS series VARCHAR",
    "ALTER TABLE models ADD COLUMN IF NOT EXISTS step BIGINT",
    "ALTER TABLE models ADD COLUMN IF NOT EXISTS seed INTEGER",
    # Causal validation of roles (headwiki.ablation.validation): labelled heads ablated as a group vs matched random sets.
    """CREATE TABLE IF NOT EXISTS role_validation (
        model_id VARCHAR, role VARCHAR, signature VARCHAR, group_name VARCHAR, k INTEGER, heads VARCHAR[],
        ablation VARCHAR, effect DOUBLE, effect_lo DOUBLE, effect_hi DOUBLE, clean_value DOUBLE,
        random_mean DOUBLE, random_min DOUBLE, random_max DOUBLE, random_effects DOUBLE[], n_random INTEGER,
        p_rank DOUBLE, p_paired DOUBLE, significant BOOLEAN, n_seqs INTEGER, seq_len INTEGER, note VARCHAR,
        run_id VARCHAR,
        PRIMARY KEY (model_id, role, signature, group_name, ablation)
    )""",
    # Composition between heads (headwiki.composition, written by the detect pass): Q/K/V-composition score of every
    # (upstream, downstream) pair with src_layer < dst_layer, its random-matrix baseline (mean, sd, draws) and z.
    """CREATE TABLE IF NOT EXISTS head_edges (
        model_id VARCHAR, kind VARCHAR, src_layer INTEGER, src_head INTEGER, dst_layer INTEGER, dst_head INTEGER,
        score DOUBLE, baseline DOUBLE, baseline_sd DOUBLE, n_draws INTEGER, z DOUBLE,
        PRIMARY KEY (model_id, kind, src_layer, src_head, dst_layer, dst_head)
    )""",
    # Each head's top-activating positions on the detect pass's natural-text windows (detectors/examples.py):
    # a token strip ending at the query position, the head's attention over the strip, the statistic's value.
    """CREATE TABLE IF NOT EXISTS head_top_examples (
        model_id VARCHAR, layer INTEGER, head INTEGER, rank INTEGER, statistic VARCHAR, value DOUBLE,
        seq INTEGER, position INTEGER, tokens VARCHAR[], attention DOUBLE[], query INTEGER, top_key INTEGER,
        source VARCHAR,
        PRIMARY KEY (model_id, layer, head, rank)
    )""",
    # OV profile of each head (headwiki.detectors.weights): for a few input tokens, the tokens whose direct logits
    # the head's OV output raises (boosted) and lowers (suppressed) most; logit = z-score over the vocabulary.
    """CREATE TABLE IF NOT EXISTS head_ov_profile (
        model_id VARCHAR, layer INTEGER, head INTEGER, input_rank INTEGER, input_token VARCHAR, direction VARCHAR,
        rank INTEGER, token VARCHAR, logit DOUBLE,
        PRIMARY KEY (model_id, layer, head, input_rank, direction, rank)
    )""",
)

# Model diffs (`headwiki diff A B`, headwiki.modeldiff): one summary row per ordered pair (A, B), the tokens where their
# log-probs differ most, per-head weight / activation differences (same structure), per-head metric deltas B - A with CIs.
DDL += (
    """CREATE TABLE IF NOT EXISTS model_diffs (
        model_a VARCHAR, model_b VARCHAR, run_id VARCHAR, created_at TIMESTAMP, same_structure BOOLEAN,
        same_tokenizer BOOLEAN, n_passages INTEGER, n_tokens INTEGER, mean_logp_a DOUBLE, mean_logp_b DOUBLE,
        mean_delta DOUBLE, mean_delta_lo DOUBLE, mean_delta_hi DOUBLE, mean_abs_delta DOUBLE, ci_method VARCHAR,
        note VARCHAR, params JSON,
        PRIMARY KEY (model_a, model_b)
    )""",
    """CREATE TABLE IF NOT EXISTS diff_tokens (
        model_a VARCHAR, model_b VARCHAR, rank INTEGER, passage INTEGER, position INTEGER, token VARCHAR,
        context VARCHAR, logp_a DOUBLE, logp_b DOUBLE, delta DOUBLE,
        PRIMARY KEY (model_a, model_b, rank)
    )""",
    """CREATE TABLE IF NOT EXISTS diff_heads (
        model_a VARCHAR, model_b VARCHAR, layer INTEGER, head INTEGER, label VARCHAR,
        qk_rel DOUBLE, ov_rel DOUBLE, act_rel DOUBLE, dla_a DOUBLE, dla_b DOUBLE, dla_delta DOUBLE, dla_delta_lo DOUBLE,
        dla_delta_hi DOUBLE, patch_gain DOUBLE, patch_share DOUBLE,
        PRIMARY KEY (model_a, model_b, layer, head)
    )""",
    """CREATE TABLE IF NOT EXISTS diff_head_metrics (
        model_a VARCHAR, model_b VARCHAR, layer INTEGER, head INTEGER, label VARCHAR, metric VARCHAR,
        value_a DOUBLE, value_b DOUBLE, delta DOUBLE, delta_lo DOUBLE, delta_hi DOUBLE,
        PRIMARY KEY (model_a, model_b, layer, head, metric)
    )""",
)
DIFF_TABLES: tuple[str, ...] = ("model_diffs", "diff_tokens", "diff_heads", "diff_head_metrics")

# Tables whose rows belong to one model (cleared per model when a pass rewrites them).
MODEL_TABLES: tuple[str, ...] = (
    "heads", "metrics", "head_examples", "negation_baselines", "negation_items",
    "negation_item_effects", "negation_groups", "role_validation", "roles", "head_edges", "head_top_examples",
    "head_ov_profile",
)

LONG_VIEW = "head_metrics_long"
