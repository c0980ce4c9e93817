"""A small GPT-2 trained on a generated toy world, with known attention circuits.

See ``headwiki/toy/model/README.md`` (the model card). Public entry points:
:func:`headwiki.toy.world.negation_items`, :func:`headwiki.toy.world.corpus_text`,
:func:`headwiki.toy.world.ordinary_vocab`, :data:`MODEL_DIR` (the committed weights), :func:`world_seed` (the world they were trained on).
"""

import json
from pathlib import Path

MODEL_DIR: Path = Path(__file__).parent / "model"


def world_seed(model_dir: Path = MODEL_DIR) -> int:
    """Seed of the toy world the model in ``model_dir`` was trained on (its metrics.json config).

    Held-out negation items and toy corpus text must come from that world: another seed's world
    holds out other entities, some of which this model saw negated in training.
    """
    return int(json.loads((model_dir / "metrics.json").read_text())["config"]["seed"])


__all__ = ["MODEL_DIR", "world_seed"]
