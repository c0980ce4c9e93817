"""Random-initialised HuggingFace model directories built from a config (no download).

Used by tests (shape/generality on GPT-2 and GQA/rotary Llama architectures) and by the
benchmarks (GPT-2-small shape). The tokenizer is a word-level one over synthetic words so that
any vocabulary size works offline.
"""

from __future__ import annotations

from pathlib import Path

import torch

BOS, EOS, PAD, UNK = "<bos>", "<eos>", "<pad>", "<unk>"


def word_vocab(vocab_size: int) -> list[str]:
    """Special tokens followed by synthetic words w0, w1, ... filling `vocab_size` entries."""
    specials = [PAD, BOS, EOS, UNK]
    return specials + [f"w{i}" for i in range(vocab_size - len(specials))]


def build_word_tokenizer(words: list[str]):
    """A PreTrainedTokenizerFast (WordLevel, WhitespaceSplit, BOS prepended by the post-processor)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK, padding_side="right"
    )


def write_random_model(
    out_dir: str | Path,
    arch: str = "gpt2",
    n_layers: int = 2,
    n_heads: int = 4,
    d_model: int = 64,
    vocab_size: int = 256,
    n_ctx: int = 128,
    n_kv_heads: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a random-init `arch` ("gpt2" | "llama") model + word tokenizer to `out_dir`; return the path.

    For "llama", `n_kv_heads < n_heads` gives grouped-query attention; rotary embeddings are built in.
    """
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    words = word_vocab(vocab_size)
    tokenizer = build_word_tokenizer(words)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    if arch == "gpt2":
        cfg = GPT2Config(
            n_layer=n_layers, n_head=n_heads, n_embd=d_model, vocab_size=vocab_size, n_positions=n_ctx,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **ids,
        )
        model = GPT2LMHeadModel(cfg)
    elif arch == "llama":
        cfg = LlamaConfig(
            num_hidden_layers=n_layers, num_attention_heads=n_heads, num_key_value_heads=n_kv_heads or n_heads,
            hidden_size=d_model, intermediate_size=4 * d_model, vocab_size=vocab_size,
            max_position_embeddings=n_ctx, head_dim=d_model // n_heads, tie_word_embeddings=True, **ids,
        )
        model = LlamaForCausalLM(cfg)
    else:
        raise ValueError(f"unknown arch {arch!r}: use gpt2 or llama")
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
