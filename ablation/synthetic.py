"""Synthetic negation items over the word vocabulary of headwiki.random_models (w0, w1, ...).

For random-init models in tests and benchmarks only: the words carry no meaning, so the items test
mechanics (tokenization, batching, exactness, speed), never model behaviour.
"""

from __future__ import annotations

import numpy as np

from headwiki.ablation.items import NegationItem

NOT_WORD, ALSO_WORD = "w1", "w2"


def synthetic_items(n_items: int, n_words: int, seed: int = 0, multi_token_every: int = 0,
                    n_templates: int = 4) -> list[NegationItem]:
    """`n_items` minimal pairs "wA wB [w1|w2] wC" -> " wT" / " wF" over words w3..w{n_words-1}.

    `multi_token_every` = k > 0 makes every k-th item's candidates two words long (" wT wU").
    The negation word is not last, so negated and control prompts end in the same token.
    """
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n_items):
        a, b, c, t, f, u = (int(x) for x in rng.choice(np.arange(3, n_words), size=6, replace=False))
        multi = multi_token_every > 0 and i % multi_token_every == 0
        target, foil = (f" w{t} w{u}", f" w{f}") if multi else (f" w{t}", f" w{f}")
        items.append(NegationItem(
            id=f"syn{i}", template=f"t{i % n_templates}",
            affirmative=f"w{a} w{b} w{c}", negated=f"w{a} w{b} {NOT_WORD} w{c}", control=f"w{a} w{b} {ALSO_WORD} w{c}",
            target=target, foil=foil,
        ))
    return items
