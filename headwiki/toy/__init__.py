"""A small GPT-2 trained on a generated toy world, with known attention circuits.

See ``headwiki/toy/model/README.md`` (the model card). Public entry points:
:func:`headwiki.toy.world.negation_items`, :func:`headwiki.toy.world.corpus_text`,
:func:`headwiki.toy.world.ordinary_vocab`, :data:`MODEL_DIR` (the committed weights).
"""

from pathlib import Path

MODEL_DIR: Path = Path(__file__).parent / "model"

__all__ = ["MODEL_DIR"]
