"""The start token every sequence a pass feeds the model begins with (`--bos`).

Which token sits at position 0 is not a detail: attention heads park mass on it, and on SmolLM2-135M-Instruct
the negation sensitivity measured with ``<|im_start|>`` (its tokenizer's BOS) and with ``<|endoftext|>`` (its
pretraining document separator) differ ninefold (issue 23). So the choice is an option, resolved once per
loaded model, recorded in every pass's parameters (and so in its resume fingerprint and provenance).

Choices (``--bos``):

* ``auto`` (default): the model family's default below — the tokenizer's BOS token, else its EOS token
  (GPT-2 and GPT-NeoX/Pythia tokenizers use ``<|endoftext|>`` as both). Sequences are tokenized with the
  model's own BOS policy, exactly as before this option existed.
* ``bos`` / ``eos``: the tokenizer's BOS / EOS token.
* a token string in the vocabulary (``<|endoftext|>``) or an integer id (``0``).

Defaults per family (what ``auto`` resolves to; see README "Start token"):

====================  ===========================================================================
family                ``auto`` start token
====================  ===========================================================================
GPT-2                 ``<|endoftext|>`` (its BOS and EOS are the same token)
GPT-NeoX / Pythia     ``<|endoftext|>``
Llama 1/2, stories    ``<s>``
SmolLM2 (Llama arch)  the tokenizer's BOS: ``<|im_start|>`` for the Instruct GGUF; ``--bos '<|endoftext|>'``
                      starts raw text the way pretraining documents start
headwiki toy          ``<bos>``
====================  ===========================================================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from headwiki.errors import HeadwikiError

AUTO = "auto"
CHOICES_HELP = ("start token of every sequence: auto (the model family's default: the tokenizer's BOS, else EOS), "
                "bos, eos, a token string in the vocabulary ('<|endoftext|>') or a token id")


@dataclass(frozen=True)
class StartToken:
    """The resolved start token: its id, its text, what the user asked for and why this token."""

    id: int
    text: str
    choice: str  # the --bos value as given ("auto", "eos", "<|endoftext|>", "0")
    why: str  # one phrase: "tokenizer BOS", "tokenizer EOS (no BOS)", "token string", "token id"

    @property
    def is_auto(self) -> bool:
        return self.choice == AUTO

    def record(self) -> dict[str, Any]:
        """The form stored in a pass's params (and so its fingerprint and provenance)."""
        return asdict(self)


def check_choice(choice: str | None) -> str:
    """Syntax check before any model loads: a non-empty value without surrounding whitespace."""
    value = AUTO if choice is None else str(choice)
    if not value or value != value.strip():
        raise HeadwikiError(f"--bos {value!r} is empty or padded with spaces: give auto, bos, eos, a token string or a token id")
    return value


def resolve_start_token(tokenizer: Any, d_vocab: int, choice: str | None = AUTO) -> StartToken:
    """Resolve `choice` against the model's tokenizer (and embedding size `d_vocab`) -> StartToken.

    A token that is unknown, not a single vocabulary entry or past the embedding is one clear error.
    """
    value = check_choice(choice)
    bos, eos = getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None)
    if value in (AUTO, "bos"):
        if bos is not None:
            tid, why = int(bos), "tokenizer BOS"
        elif eos is not None and value == AUTO:
            tid, why = int(eos), "tokenizer EOS (the tokenizer has no BOS)"
        else:
            raise HeadwikiError(f"--bos {value}: the model's tokenizer has no BOS token"
                                + (" nor an EOS token; set bos_token in tokenizer_config.json" if eos is None else "; use --bos eos or a token string"))
    elif value == "eos":
        if eos is None:
            raise HeadwikiError("--bos eos: the model's tokenizer has no EOS token; use --bos bos or a token string")
        tid, why = int(eos), "tokenizer EOS"
    elif value.isdigit():
        tid, why = int(value), "token id"
    else:
        vocab = tokenizer.get_vocab()
        if value not in vocab:
            specials = [t for t in getattr(tokenizer, "all_special_tokens", [])][:8]
            raise HeadwikiError(f"--bos {value!r} is not a token of this model's vocabulary: use auto, bos, eos, a token id"
                                + (f" or one of its special tokens {', '.join(specials)}" if specials else ""))
        tid, why = int(vocab[value]), "token string"
    if not 0 <= tid < d_vocab:
        raise HeadwikiError(f"--bos {value}: token id {tid} is outside the model's vocabulary (0..{d_vocab - 1})")
    text = str(tokenizer.convert_ids_to_tokens(tid))
    return StartToken(id=tid, text=text, choice=value, why=why)


def describe(record: dict[str, Any]) -> str:
    """A run's stored start token (its params' ``start_token``) in words."""
    return f"{record['text']} (id {record['id']}; --bos {record['choice']}: {record['why']})"


def cli_flag(record: dict[str, Any] | None) -> str:
    """The `--bos ...` a command needs to reproduce a run's start token ("" for the default)."""
    if not record or record.get("choice", AUTO) == AUTO:
        return ""
    import shlex

    return f"--bos {shlex.quote(str(record['choice']))}"
