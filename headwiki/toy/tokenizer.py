"""Word-level tokenizer of the toy language.

Built with ``tokenizers``: a WordLevel model over :data:`SPECIAL_TOKENS` + :func:`ordinary_vocab`,
pre-tokenizer ``WhitespaceSplit`` (``Whitespace`` would split ``<bos>`` into three pieces) and a
``TemplateProcessing("<bos> $A")`` post-processor, so the tokenizer itself prepends exactly one
BOS. TransformerLens then detects ``tokenizer_prepends_bos`` and adds no second BOS.
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from headwiki.toy.world import BOS, EOS, PAD, SPECIAL_TOKENS, UNK, ordinary_vocab


def vocab() -> dict[str, int]:
    """Token -> id: special tokens first (ids 0..3), then the ordinary words."""
    words = list(SPECIAL_TOKENS) + ordinary_vocab()
    return {w: i for i, w in enumerate(words)}


def n_special() -> int:
    """Number of special tokens; ordinary word ``k`` has id ``n_special() + k``."""
    return len(SPECIAL_TOKENS)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The HF fast tokenizer (deterministic; no training involved)."""
    v = vocab()
    tok = Tokenizer(models.WordLevel(vocab=v, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, v[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=64,
    )
