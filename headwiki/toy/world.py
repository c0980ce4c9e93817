"""The seeded toy world and its corpus generator.

The world is a fixed taxonomy: 9 categories ("bird", "fish", ...) with 12 member entities
each ("robin", "salmon", ...). Every word starts with a consonant so that the article before
a category ("a") never leaks which category is meant. Sentences are always TRUE:

* affirmative  ``a robin is a bird .``
* negated      ``a robin is not a fish .``   (any category other than the entity's own)
* control      ``a robin is also a bird .``  (same length as the negated form, no negation)

Every negated fact of some entities is HELD OUT of training (a seed picks which):
:data:`N_HELDOUT_PER_CATEGORY` entities per category (the test) and
:data:`N_VALIDATION_PER_CATEGORY` more (the validation split, so that choices among training runs
never look at the test entities) occur in affirmative and control sentences but never in a
negated one. Every other entity is negated with every wrong category, so what follows "not"
depends on the subject's category alone (an earlier world also held out 2 (entity, wrong
category) pairs per negated entity; that made the "not" distribution entity-specific and
never-negated accuracy fell, docs/toy_experiments.md round 6).

:func:`negation_items` builds two-alternative minimal pairs for each split.

Besides world text the training corpus contains two synthetic document kinds over random
ordinary tokens (they shape the attention circuits the wiki is meant to find):

* forward repeats ``s s s ...``  -> previous-token + induction heads (predict the token after the
  earlier copy);
* "again" documents ``x y x again z y again ...`` -> duplicate-token heads: predicting the marker
  needs to know whether the current token occurred before (the trainer feeds them through
  layer 0 alone, so that a layer-0 head has to match tokens; see ``headwiki.toy.train``).

All functions here are pure given their ``seed`` / ``rng`` arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

BOS: str = "<bos>"
EOS: str = "<eos>"
PAD: str = "<pad>"
UNK: str = "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (BOS, EOS, PAD, UNK)

NEGATION_WORD: str = "not"
CONTROL_WORD: str = "also"
DETERMINERS: tuple[str, ...] = ("a", "the", "this")
FUNCTION_WORDS: tuple[str, ...] = ("a", "the", "this", "is", NEGATION_WORD, CONTROL_WORD, ".")
#: In "again" documents this word follows every token that already occurred in the document.
MARKER_WORD: str = "again"

TAXONOMY: dict[str, tuple[str, ...]] = {
    "bird": ("robin", "sparrow", "crow", "parrot", "swan", "pigeon", "hawk", "finch", "heron", "raven", "stork", "wren"),
    "fish": ("salmon", "trout", "shark", "tuna", "carp", "cod", "perch", "pike", "bass", "mackerel", "herring", "sole"),
    "mammal": ("dog", "cat", "horse", "cow", "whale", "bat", "mouse", "lion", "goat", "tiger", "rabbit", "deer"),
    "bug": ("bee", "wasp", "moth", "beetle", "flea", "hornet", "cricket", "gnat", "mosquito", "termite", "locust", "mantis"),
    "reptile": ("snake", "lizard", "turtle", "gecko", "cobra", "tortoise", "crocodile", "viper", "python", "skink", "caiman", "boa"),
    "tree": ("pine", "maple", "birch", "willow", "cedar", "beech", "spruce", "poplar", "larch", "hazel", "fir", "yew"),
    "flower": ("rose", "tulip", "daisy", "lily", "violet", "lotus", "poppy", "daffodil", "peony", "dahlia", "lilac", "jasmine"),
    "tool": ("hammer", "saw", "drill", "wrench", "chisel", "shovel", "rake", "spade", "pliers", "mallet", "trowel", "sander"),
    "fruit": ("pear", "plum", "mango", "lemon", "cherry", "peach", "grape", "banana", "kiwi", "melon", "fig", "lime"),
}
CATEGORIES: tuple[str, ...] = tuple(TAXONOMY)
N_HELDOUT_PER_CATEGORY: int = 2
#: Further never-negated entities per category, for model selection only (split "validation").
N_VALIDATION_PER_CATEGORY: int = 1

#: Longest sentence in tokens ("the crocodile is not a fish ." = 7).
MAX_SENTENCE_TOKENS: int = 7
#: Weight of the 3 "contrast" categories among the wrong categories after "not" (see contrast_weights).
NEGATION_CONTRAST: float = 5.0

SentenceKind = Literal["affirmative", "negated", "control"]
Split = Literal["heldout", "validation", "train"]


@dataclass(frozen=True)
class World:
    """One seeded instance of the toy world.

    Attributes:
        seed: the seed that chose the held-out entities.
        category_of: entity -> its (only) category.
        heldout_entities: entities never seen in a negated sentence during training (the test).
        validation_entities: more never-negated entities, disjoint from the test ones, for
            choosing among training runs.
        negation_entities: entities whose negations are trained (all other entities).
    """

    seed: int
    category_of: dict[str, str]
    heldout_entities: tuple[str, ...]
    validation_entities: tuple[str, ...]
    negation_entities: tuple[str, ...]

    def trained_foils(self, entity: str) -> tuple[str, ...]:
        """Wrong categories that follow ``entity`` after "not" in training: every category but its
        own for a negation entity, none for a never-negated one."""
        if entity not in self.negation_entities:
            return ()
        return tuple(c for c in CATEGORIES if c != self.category_of[entity])

    @property
    def entities(self) -> tuple[str, ...]:
        """All entities in taxonomy order."""
        return tuple(self.category_of)


def make_world(seed: int = 0) -> World:
    """Build the world for ``seed``: :data:`N_HELDOUT_PER_CATEGORY` test and
    :data:`N_VALIDATION_PER_CATEGORY` validation entities per category, never negated."""
    rng = np.random.default_rng([seed, 7919])
    category_of = {e: c for c, members in TAXONOMY.items() for e in members}
    heldout: list[str] = []
    validation: list[str] = []
    for members in TAXONOMY.values():
        picks = rng.choice(len(members), size=N_HELDOUT_PER_CATEGORY + N_VALIDATION_PER_CATEGORY,
                           replace=False)
        heldout.extend(members[i] for i in sorted(picks[:N_HELDOUT_PER_CATEGORY]))
        validation.extend(members[i] for i in sorted(picks[N_HELDOUT_PER_CATEGORY:]))
    held = set(heldout) | set(validation)
    return World(
        seed=seed,
        category_of=category_of,
        heldout_entities=tuple(heldout),
        validation_entities=tuple(validation),
        negation_entities=tuple(e for e in category_of if e not in held),
    )


def n_content_words() -> int:
    """How many ordinary words random-token documents and probes draw from (all but the marker)."""
    return len(ordinary_vocab()) - 1


def marker_index() -> int:
    """Index of :data:`MARKER_WORD` in :func:`ordinary_vocab` (the last word)."""
    return len(ordinary_vocab()) - 1


def ordinary_vocab() -> list[str]:
    """The ordinary (non-special) words of the toy language, in vocabulary order.

    Function words, then categories, then entities. Random-token documents and the
    induction / duplicate-token probes draw from exactly this list.
    """
    entities = [e for members in TAXONOMY.values() for e in members]
    return list(FUNCTION_WORDS) + list(CATEGORIES) + entities + [MARKER_WORD]


def sentence(det: str, entity: str, category: str, kind: SentenceKind) -> str:
    """One sentence, e.g. ``sentence("a", "robin", "fish", "negated") == "a robin is not a fish ."``.

    The caller is responsible for truth: ``category`` must be the entity's category for
    ``affirmative`` / ``control`` and a different one for ``negated``.
    """
    middle = {"affirmative": "is", "negated": f"is {NEGATION_WORD}", "control": f"is {CONTROL_WORD}"}[kind]
    return f"{det} {entity} {middle} a {category} ."


def contrast_weights(category: str, strength: float) -> np.ndarray:
    """Weights over CATEGORIES for the wrong category in "X is not a ...", X of ``category``: the 3
    categories after it in CATEGORIES (cyclically) weigh ``strength``, the other wrong ones 1, its
    own 0: float64 [n_categories]. Because what follows "not" then depends on X's category, the
    model has to read that category under negation (uniform foils let it ignore X there)."""
    i = CATEGORIES.index(category)
    w = np.ones(len(CATEGORIES))
    for k in (1, 2, 3):
        w[(i + k) % len(CATEGORIES)] = strength
    w[i] = 0.0
    return w


def sample_sentence(rng: np.random.Generator, world: World, contrast: float = NEGATION_CONTRAST) -> str:
    """Sample one true training sentence.

    Mix: 40% affirmative, 40% negated (negation entities only, wrong category drawn from the
    entity's trained foils with :func:`contrast_weights`), 20% control. Held-out facts never occur.
    """
    det = DETERMINERS[int(rng.integers(len(DETERMINERS)))]
    u = float(rng.random())
    if u < 0.4:
        entity = world.entities[int(rng.integers(len(world.entities)))]
        return sentence(det, entity, world.category_of[entity], "affirmative")
    if u < 0.8:
        entity = world.negation_entities[int(rng.integers(len(world.negation_entities)))]
        wrong = world.trained_foils(entity)
        w = contrast_weights(world.category_of[entity], contrast)[[CATEGORIES.index(c) for c in wrong]]
        return sentence(det, entity, wrong[int(rng.choice(len(wrong), p=w / w.sum()))], "negated")
    entity = world.entities[int(rng.integers(len(world.entities)))]
    return sentence(det, entity, world.category_of[entity], "control")


def sample_passage(rng: np.random.Generator, world: World, n_sentences: int) -> str:
    """``n_sentences`` sampled sentences joined by spaces (no BOS; the tokenizer adds it)."""
    return " ".join(sample_sentence(rng, world) for _ in range(n_sentences))


def corpus_text(n_sentences: int, seed: int, per_passage: int = 8) -> list[str]:
    """Held-out natural toy-world text for detectors ("natural text" on the toy model).

    Returns ``ceil(n_sentences / per_passage)`` passages holding ``n_sentences`` sentences in
    all; each passage has at most ``per_passage`` sentences (8 sentences <= 56 tokens, so with
    BOS it fits the 64-token context). Sentences follow the training distribution of the world
    built with ``seed`` but come from a random stream disjoint from the training stream, so the
    passages (not the individual facts) are unseen. Deterministic in ``seed``.
    """
    if n_sentences < 0 or per_passage < 1:
        raise ValueError("n_sentences must be >= 0 and per_passage >= 1")
    world = make_world(seed)
    rng = np.random.default_rng([seed, 1_000_003])  # training uses [seed, 1]
    passages: list[str] = []
    remaining = n_sentences
    while remaining > 0:
        k = min(per_passage, remaining)
        passages.append(sample_passage(rng, world, k))
        remaining -= k
    return passages


def negation_items(seed: int = 0, split: Split = "heldout") -> list[dict[str, str]]:
    """Two-alternative negation minimal pairs.

    For every entity of the split, every wrong category (the foil) and every determiner
    template, one item::

        {"id": "heldout/robin/fish/a", "template": "a {entity} is {neg} a",
         "affirmative": "a robin is a", "negated": "a robin is not a",
         "control": "a robin is also a", "target": " bird", "foil": " fish"}

    ``target`` (the entity's category) is correct after the affirmative and control prompts;
    ``foil`` is correct after the negated prompt. ``prompt + candidate`` is the full sentence
    prefix; each candidate is one token. The control swaps ``not`` for ``also`` (same length).

    Splits: ``"heldout"`` = entities never negated in training (18 entities x 8 foils x 3
    templates = 432 items: the model must apply "not" to a category it only knows from
    affirmative sentences); ``"validation"`` = the same kind of item on 9 further never-negated
    entities (216 items), for choosing among training runs without looking at the test;
    ``"train"`` = the trained negations (81 x 8 x 3 = 1944). Counterbalanced: in every split
    each category is the target in as many items as it is the foil.
    """
    world = make_world(seed)
    if split in ("heldout", "validation"):
        unseen = world.heldout_entities if split == "heldout" else world.validation_entities
        pairs = [(e, f) for e in unseen for f in CATEGORIES if f != world.category_of[e]]
    elif split == "train":
        pairs = [(e, f) for e in world.negation_entities for f in world.trained_foils(e)]
    else:
        raise ValueError(f"unknown split {split!r}; use 'heldout', 'validation' or 'train'")
    items: list[dict[str, str]] = []
    for entity, foil in pairs:
        target = world.category_of[entity]
        for det in DETERMINERS:
            items.append(
                {
                    "id": f"{split}/{entity}/{foil}/{det}",
                    "template": f"{det} {{entity}} is {{neg}} a",
                    "affirmative": f"{det} {entity} is a",
                    "negated": f"{det} {entity} is {NEGATION_WORD} a",
                    "control": f"{det} {entity} is {CONTROL_WORD} a",
                    "target": f" {target}",
                    "foil": f" {foil}",
                }
            )
    return items


def repeat_tokens(rng: np.random.Generator, n_vocab: int, span: int, copies: int) -> np.ndarray:
    """A span of ``span`` distinct random ids in ``[0, n_vocab)`` repeated ``copies`` times:
    int64 [span * copies]. Ids index :func:`ordinary_vocab`."""
    return np.tile(rng.choice(n_vocab, size=span, replace=False), copies).astype(np.int64)


def again_tokens(rng: np.random.Generator, n_vocab: int, length: int, marker: int,
                 pool_size: tuple[int, int] = (12, 28)) -> np.ndarray:
    """An "again" document: tokens drawn with replacement from a random pool of ``pool_size[0]`` to
    ``pool_size[1]`` words, each token that already occurred followed by ``marker``: int64 [length].
    Predicting the marker needs to know whether the current token has an earlier copy: through
    layer 0 alone, only a duplicate-token head can tell (through a whole 2-layer model the
    induction heads do it instead, by attending to the position after the earlier copy)."""
    pool = rng.choice(n_vocab, size=int(rng.integers(pool_size[0], pool_size[1] + 1)), replace=False)
    seen: set[int] = set()
    out: list[int] = []
    while len(out) < length:
        x = int(pool[int(rng.integers(len(pool)))])
        out.append(x)
        if x in seen:
            out.append(marker)
        seen.add(x)
    return np.asarray(out[:length], dtype=np.int64)
