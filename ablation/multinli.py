"""MultiNLI (``nyu-mll/multi_nli``) turned into negation minimal pairs for a causal LM.

Format (documented, and honest about what it measures). From the `validation_matched` split we
keep pairs whose hypothesis contains exactly one negation cue of NOTES.md's list and that cue
is the word ``not`` (phrases "not only", "whether or not", "no doubt" are excluded), and whose
gold label is entailment or contradiction (neutral dropped). The three prompts are::

    {premise}\\nQuestion: {hypothesis'} True or False?\\nAnswer:

with hypothesis' = the hypothesis without ``not`` (affirmative), the original hypothesis
(negated), and the hypothesis with ``not`` replaced by ``also`` (control, same length).
Candidates are `` True`` / `` False``. The gold label applies to the *negated* (original)
hypothesis; the foil is its correct answer (entailment -> `` True``, contradiction ->
`` False``) and the target is the other one. Caveats: deleting ``not`` is assumed to flip the
truth value (true for most single-negation hypotheses, not all), and negation words predict
"contradiction" by themselves in MultiNLI (annotation artefact), so accuracies here are a
coarse probe. ``template`` = the MultiNLI genre (clusters for the bootstrap).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from headwiki.ablation.items import NegationItem
from headwiki.errors import HeadwikiError

HF_ID = "nyu-mll/multi_nli"
SPLIT = "validation_matched"
CUES: tuple[str, ...] = ("not", "n't", "no", "never", "nothing", "nobody", "none", "neither", "nor", "nowhere",
                         "without", "cannot")
EXCLUDED_PHRASES: tuple[str, ...] = ("not only", "whether or not", "no doubt")
ENTAILMENT, NEUTRAL, CONTRADICTION = 0, 1, 2
_WORD = re.compile(r"[A-Za-z']+|n't")


def negation_cues(text: str) -> list[str]:
    """Negation cue words found in `text` (lower-cased; "n't" counted from contractions)."""
    lowered = text.lower()
    found = [w for w in re.findall(r"[a-z]+", lowered.replace("n't", " n't ")) if w in CUES]
    found += ["n't"] * lowered.count("n't")
    return found


def prompt(premise: str, hypothesis: str) -> str:
    return f"{premise.strip()}\nQuestion: {hypothesis.strip()} True or False?\nAnswer:"


def pair_to_item(row: Mapping[str, object], index: int) -> NegationItem | None:
    """One MultiNLI row (premise, hypothesis, label, genre) -> item, or None when it does not qualify."""
    hypothesis = str(row["hypothesis"])
    label = int(row["label"])  # type: ignore[arg-type]
    if label not in (ENTAILMENT, CONTRADICTION):
        return None
    lowered = hypothesis.lower()
    if any(p in lowered for p in EXCLUDED_PHRASES) or negation_cues(hypothesis) != ["not"]:
        return None
    if len(re.findall(r"\bnot\b", hypothesis)) != 1:  # "Not" capitalised at the start: skip
        return None
    affirmative = re.sub(r"\s*\bnot\b", "", hypothesis, count=1)
    control = re.sub(r"\bnot\b", "also", hypothesis, count=1)
    premise = str(row["premise"])
    correct_negated = " True" if label == ENTAILMENT else " False"
    other = " False" if correct_negated == " True" else " True"
    return NegationItem(
        id=f"mnli-{index}", template=str(row.get("genre") or "multinli"),
        affirmative=prompt(premise, affirmative), negated=prompt(premise, hypothesis), control=prompt(premise, control),
        target=other, foil=correct_negated,
    )


def rows_to_items(rows: Iterable[Mapping[str, object]], max_items: int = 600) -> list[NegationItem]:
    """Convert qualifying rows in order, stopping after `max_items` items."""
    items: list[NegationItem] = []
    for index, row in enumerate(rows):
        item = pair_to_item(row, index)
        if item is not None:
            items.append(item)
            if len(items) >= max_items:
                break
    return items


def load_multinli_items(seed: int = 0, max_items: int = 600) -> list[NegationItem]:
    """Load validation_matched through HF `datasets` (cache or hub) and convert it; one-line error offline."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a declared dependency
        raise HeadwikiError("the multinli dataset needs the `datasets` package: pip install datasets") from exc
    datasets.disable_progress_bars()
    try:
        rows = datasets.load_dataset(HF_ID, split=SPLIT)
    except Exception as exc:  # noqa: BLE001 - any failure to fetch is the same user-facing problem
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise HeadwikiError(
            f"could not load {HF_ID} ({first}): run once with internet access to cache it, "
            f"or pass --dataset english|toy|FILE"
        ) from exc
    items = rows_to_items(rows.shuffle(seed=seed), max_items=max_items)
    if not items:
        raise HeadwikiError(f"no {HF_ID} rows qualified as negation minimal pairs: check the dataset version")
    return items
