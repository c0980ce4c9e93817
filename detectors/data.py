"""Input sequences for the detectors: seeded random-token repeats, random tokens, natural text.

Every builder is deterministic in its seed and returns a token tensor [n, 2L+1] that starts with
BOS, so all detector inputs share one length and batch without padding.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from headwiki.errors import HeadwikiError

ENGLISH = "english"
TOY = "toy"
_BYTE_TOKEN = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


@dataclass(frozen=True)
class TextSource:
    """Natural text for the detectors: a name for the record and the passages themselves."""

    name: str
    passages: list[str]


def ordinary_token_ids(tokenizer: Any, d_vocab: int) -> torch.Tensor:
    """Ids of the tokenizer's ordinary vocabulary, sorted.

    Ordinary = below the model's d_vocab, not a special/added token, not a byte-fallback token
    (``<0x0A>``), decoding to visible text, and re-encoding to itself alone (so random sequences of
    them are text the tokenizer itself could produce). Returns int64 [m].
    """
    special = set(int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None)
    added = set(int(i) for i in getattr(tokenizer, "get_added_vocab", lambda: {})().values())
    size = min(int(d_vocab), len(tokenizer))
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    candidates = [
        i for i, piece in enumerate(pieces)
        if i not in special and i not in added and piece is not None and not _BYTE_TOKEN.match(piece)
    ]
    texts = tokenizer.batch_decode([[i] for i in candidates])
    keep_pairs = [(i, t) for i, t in zip(candidates, texts) if t.strip()]
    encoded = tokenizer([t for _, t in keep_pairs], add_special_tokens=False)["input_ids"]
    ids = [i for (i, _), enc in zip(keep_pairs, encoded) if list(enc) == [i]]
    if len(ids) < 2:
        raise HeadwikiError(
            f"the tokenizer has only {len(ids)} ordinary tokens that round-trip: random-token detectors need at least 2; "
            "check the tokenizer files beside the model"
        )
    return torch.tensor(ids, dtype=torch.long)


def repeat_sequences(vocab: torch.Tensor, n: int, half_len: int, bos: int, seed: int) -> torch.Tensor:
    """[n, 2L+1] = [BOS, x_1..x_L, x_1..x_L], x distinct (without replacement) when the vocab allows.

    vocab: int64 [m] ordinary ids. Deterministic in `seed`.
    """
    gen = torch.Generator().manual_seed(seed)
    if len(vocab) >= half_len:
        idx = torch.stack([torch.randperm(len(vocab), generator=gen)[:half_len] for _ in range(n)])
    else:
        idx = torch.randint(0, len(vocab), (n, half_len), generator=gen)
    x = vocab[idx]
    return torch.cat([torch.full((n, 1), bos, dtype=torch.long), x, x], dim=1)


def random_sequences(vocab: torch.Tensor, n: int, length: int, bos: int, seed: int) -> torch.Tensor:
    """[n, length] = [BOS, r_1..r_{length-1}], r drawn with replacement from `vocab` (int64 [m])."""
    gen = torch.Generator().manual_seed(seed)
    r = vocab[torch.randint(0, len(vocab), (n, length - 1), generator=gen)]
    return torch.cat([torch.full((n, 1), bos, dtype=torch.long), r], dim=1)


def text_windows(tokenizer: Any, passages: list[str], n: int, length: int, bos: int) -> torch.Tensor:
    """Up to `n` non-overlapping windows [BOS, t_1..t_{length-1}] from the passages' token stream.

    Passages are tokenized without special tokens and concatenated; fewer than `n` windows come back
    when the text is short (the pass records how many). Returns int64 [k, length], k <= n.
    """
    stream: list[int] = []
    for ids in tokenizer(passages, add_special_tokens=False)["input_ids"]:
        stream.extend(int(i) for i in ids)
    body = length - 1
    k = min(n, len(stream) // body)
    if k == 0:
        return torch.empty(0, length, dtype=torch.long)
    chunks = torch.tensor(stream[: k * body], dtype=torch.long).reshape(k, body)
    return torch.cat([torch.full((k, 1), bos, dtype=torch.long), chunks], dim=1)


def english_passages() -> list[str]:
    """The project's own English passages shipped in the package (blank-line separated)."""
    resource = resources.files("headwiki.data") / "english_passages.txt"
    if not resource.is_file():
        raise HeadwikiError("headwiki/data/english_passages.txt is missing from this install: reinstall headwiki, or pass --text-file PATH")
    return _split_passages(resource.read_text(encoding="utf-8"))


def toy_passages(n_tokens: int) -> list[str]:
    """Held-out toy-world text with at least ~n_tokens words (headwiki.toy.world.corpus_text)."""
    from headwiki.toy import world_seed
    from headwiki.toy.world import corpus_text

    n_sentences = n_tokens // 5 + 8  # sentences are 6-7 words
    return corpus_text(n_sentences, world_seed())


def file_passages(path: str | Path) -> list[str]:
    """Passages from a local UTF-8 text file (blank-line separated)."""
    p = Path(path)
    if not p.is_file():
        raise HeadwikiError(f"text file {p} does not exist: pass an existing UTF-8 text file to --text-file")
    try:
        raw = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise HeadwikiError(f"text file {p} is not UTF-8 text (byte {exc.start}): pass a UTF-8 text file to --text-file") from None
    except OSError as exc:
        raise HeadwikiError(f"cannot read text file {p} ({exc.strerror}): pass a readable UTF-8 text file to --text-file") from None
    if "\x00" in raw:
        raise HeadwikiError(f"text file {p} holds NUL bytes (binary data?): pass a UTF-8 text file to --text-file")
    passages = _split_passages(raw)
    if not passages:
        raise HeadwikiError(f"text file {p} holds no text: pass a UTF-8 text file with passages separated by blank lines")
    return passages


def dataset_passages(name: str, n_tokens: int, split: str = "train") -> list[str]:
    """Passages from a HuggingFace dataset's `text` column (needs the hub or a cached copy)."""
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split, streaming=True)
        out: list[str] = []
        words = 0
        for row in ds:
            text = row.get("text") if isinstance(row, dict) else None
            if text is None:
                raise HeadwikiError(f"dataset {name!r} has no 'text' column: pass a dataset with a text column, or --text-file PATH")
            if text.strip():
                out.append(text)
                words += len(text.split())
            if words >= 2 * n_tokens:
                break
        return out
    except HeadwikiError:
        raise
    except Exception as exc:  # network/hub errors come in many types
        raise HeadwikiError(
            f"could not load text dataset {name!r} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}): "
            "it needs the HuggingFace hub (offline?); use the default English passages or --text-file PATH"
        ) from exc


def resolve_text(text: str | None, is_toy: bool, n_tokens: int) -> TextSource:
    """Pick the natural text: None -> toy corpus for the toy model else the English passages;
    "english" | "toy" | "hf:NAME" | a file path."""
    if text is None:
        text = TOY if is_toy else ENGLISH
    if text == ENGLISH:
        return TextSource("english_passages", english_passages())
    if text == TOY:
        from headwiki.toy import world_seed

        return TextSource(f"toy_corpus(seed={world_seed()})", toy_passages(n_tokens))
    if text.startswith("hf:"):
        name = text[3:]
        return TextSource(f"hf:{name}", dataset_passages(name, n_tokens))
    return TextSource(f"file:{Path(text).name}", file_passages(text))


def _split_passages(raw: str) -> list[str]:
    """Blank-line separated passages; lines starting with "# " are comments (licence, provenance)."""
    body = "\n".join(line for line in raw.splitlines() if not line.startswith("# "))
    return [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]


def tokens_hash(*tensors: torch.Tensor) -> str:
    """sha256 (16 hex) over token tensors: identifies the exact data a run used."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.to(torch.int64).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
