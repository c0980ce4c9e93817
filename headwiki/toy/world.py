"""The seeded toy world and its corpus generator.

The world is a fixed taxonomy: 9 categories ("bird", "fish", ...) with 8 member entities
each ("robin", "salmon", ...). Every word starts with a consonant so that the article before
a category ("a") never leaks which category is meant. Sentences are always TRUE:

* affirmative  ``a robin is a bird .``
* negated      ``a robin is not a fish .``   (any category other than the entity's own)
* control      ``a robin is also a bird .``  (same length as the negated form, no negation)

A seed picks, per category, :data:`N_HELDOUT_PER_CATEGORY` entities whose negations are
HELD OUT: they occur in affirmative and control sentences during training but never in a
negated sentence. :func:`negation_items` builds two-alternative minimal pairs on them.

Besides world text the training corpus contains two synthetic document kinds over random
ordinary tokens (they shape the attention circuits the wiki is meant to find):

* forward repeats ``s s s ...``      -> induction heads (predict the token after the earlier copy)
* reversal pairs  ``s reversed(s)``  -> duplicate-token heads: inside ``reversed(s)`` the next
  token is the token *before* the earlier copy of the current token, so the model has to look
  at the earlier copy itself (and read what a previous-token head stored there).

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

TAXONOMY: dict[str, tuple[str, ...]] = {
    "bird": ("robin", "sparrow", "crow", "parrot", "swan", "pigeon", "hawk", "finch"),
    "fish": ("salmon", "trout", "shark", "tuna", "carp", "cod", "perch", "pike"),
    "mammal": ("dog", "cat", "horse", "cow", "whale", "bat", "mouse", "lion"),
    "bug": ("bee", "wasp", "moth", "beetle", "flea", "hornet", "cricket", "gnat"),
    "reptile": ("snake", "lizard", "turtle", "gecko", "cobra", "tortoise", "crocodile", "viper"),
    "tree": ("pine", "maple", "birch", "willow", "cedar", "beech", "spruce", "poplar"),
    "flower": ("rose", "tulip", "daisy", "lily", "violet", "lotus", "poppy", "daffodil"),
    "tool": ("hammer", "saw", "drill", "wrench", "chisel", "shovel", "rake", "spade"),
    "fruit": ("pear", "plum", "mango", "lemon", "cherry", "peach", "grape", "banana"),
}
CATEGORIES: tuple[str, ...] = tuple(TAXONOMY)
N_HELDOUT_PER_CATEGORY: int = 2

#: Longest sentence in tokens ("the crocodile is not a fish ." = 7).
MAX_SENTENCE_TOKENS: int = 7

SentenceKind = Literal["affirmative", "negated", "control"]
Split = Literal["heldout", "train"]


@dataclass(frozen=True)
class World:
    """One seeded instance of the toy world.

    Attributes:
        seed: the seed that chose the held-out entities.
        category_of: entity -> its (only) category.
        heldout_entities: entities never seen in a negated sentence during training.
        negation_entities: entities whose negations are trained (all other entities).
    """

    seed: int
    category_of: dict[str, str]
    heldout_entities: tuple[str, ...]
    negation_entities: tuple[str, ...]

    @property
    def entities(self) -> tuple[str, ...]:
        """All entities in taxonomy order."""
        return tuple(self.category_of)


def make_world(seed: int = 0) -> World:
    """Build the world for ``seed``: which entities have held-out negations.

    Picks :data:`N_HELDOUT_PER_CATEGORY` entities per category (so every category is
    equally represented among held-out facts, which makes :func:`negation_items`
    counterbalanced).
    """
    rng = np.random.default_rng([seed, 7919])
    category_of = {e: c for c, members in TAXONOMY.items() for e in members}
    heldout: list[str] = []
    for members in TAXONOMY.values():
        picks = rng.choice(len(members), size=N_HELDOUT_PER_CATEGORY, replace=False)
        heldout.extend(members[i] for i in sorted(picks))
    held = set(heldout)
    return World(
        seed=seed,
        category_of=category_of,
        heldout_entities=tuple(heldout),
        negation_entities=tuple(e for e in category_of if e not in held),
    )


def ordinary_vocab() -> list[str]:
    """The ordinary (non-special) words of the toy language, in vocabulary order.

    Function words, then categories, then entities. Random-token documents and the
    induction / duplicate-token probes draw from exactly this list.
    """
    entities = [e for members in TAXONOMY.values() for e in members]
    return list(FUNCTION_WORDS) + list(CATEGORIES) + entities


def sentence(det: str, entity: str, category: str, kind: SentenceKind) -> str:
    """One sentence, e.g. ``sentence("a", "robin", "fish", "negated") == "a robin is not a fish ."``.

    The caller is responsible for truth: ``category`` must be the entity's category for
    ``affirmative`` / ``control`` and a different one for ``negated``.
    """
    middle = {"affirmative": "is", "negated": f"is {NEGATION_WORD}", "control": f"is {CONTROL_WORD}"}[kind]
    return f"{det} {entity} {middle} a {category} ."


def sample_sentence(rng: np.random.Generator, world: World) -> str:
    """Sample one true training sentence.

    Mix: 40% affirmative, 40% negated (negation entities only, wrong category uniform),
    20% control. Held-out entities are never negated.
    """
    det = DETERMINERS[int(rng.integers(len(DETERMINERS)))]
    u = float(rng.random())
    if u < 0.4:
        entity = world.entities[int(rng.integers(len(world.entities)))]
        return sentence(det, entity, world.category_of[entity], "affirmative")
    if u < 0.8:
        entity = world.negation_entities[int(rng.integers(len(world.negation_entities)))]
        wrong = [c for c in CATEGORIES if c != world.category_of[entity]]
        return sentence(det, entity, wrong[int(rng.integers(len(wrong)))], "negated")
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

    Splits: ``"heldout"`` = entities whose negated sentences never occur in training
    (18 entities x 8 foils x 3 templates = 432 items); ``"train"`` = the other 54 entities
    (1296 items; their (entity, foil) negations are trained). Counterbalanced: in every split
    each category is the target in as many items as it is the foil.
    """
    world = make_world(seed)
    if split == "heldout":
        entities = world.heldout_entities
    elif split == "train":
        entities = world.negation_entities
    else:
        raise ValueError(f"unknown split {split!r}; use 'heldout' or 'train'")
    items: list[dict[str, str]] = []
    for entity in entities:
        target = world.category_of[entity]
        for foil in CATEGORIES:
            if foil == target:
                continue
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


def repeat_tokens(rng: np.random.Generator, n_vocab: int, span: int, copies: int,
                  max_gap: int = 0) -> np.ndarray:
    """A span of ``span`` distinct random token ids in ``[0, n_vocab)`` repeated ``copies`` times,
    each copy followed by a gap of 0..``max_gap`` random ids (random gaps make the period
    irregular, so no fixed-offset positional head can stand in for an induction head).

    Returns int64 array [span * copies + total gap]. Ids index :func:`ordinary_vocab`.
    """
    s = rng.choice(n_vocab, size=span, replace=False)
    parts: list[np.ndarray] = []
    for _ in range(copies):
        parts.append(s)
        parts.append(rng.integers(0, n_vocab, size=int(rng.integers(0, max_gap + 1))))
    return np.concatenate(parts).astype(np.int64)


def reversal_tokens(rng: np.random.Generator, n_vocab: int, span: int) -> np.ndarray:
    """A span of distinct random ids followed by the same span reversed: int64 [2 * span]."""
    s = rng.choice(n_vocab, size=span, replace=False)
    return np.concatenate([s, s[::-1]])



def skip_permutation(seed: int, n_vocab: int) -> np.ndarray:
    """A fixed random permutation ``pi`` of ``range(n_vocab)`` (int64 [n_vocab]) for skip documents."""
    return np.random.default_rng([seed, 31337]).permutation(n_vocab).astype(np.int64)


def skip_tokens(rng: np.random.Generator, perm: np.ndarray, length: int) -> np.ndarray:
    """A "skip" document: two random ids, then ``x[t] = perm[x[t - 2]]``: int64 [length].

    The next token is a fixed function of the token BEFORE the current one, which rewards a
    previous-token head early in training. Because ``perm`` is not the identity, that head's
    output lives in a different subspace from the current token's embedding, so a later
    layer can compose with it (induction: K-composition; duplicate: V-composition).
    """
    x = np.empty(length, dtype=np.int64)
    x[:2] = rng.choice(len(perm), size=2, replace=False)
    for t in range(2, length):
        x[t] = perm[x[t - 2]]
    return x


