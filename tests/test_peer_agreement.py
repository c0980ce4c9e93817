"""Peer agreement: headwiki's batched TL-compatible scores equal TransformerLens's own detect_head.

detect_head runs one prompt at a time (strings in, tokenized by the bridge). We give it the decoded
text of headwiki's own detector sequences and run headwiki's batched pass on the bridge's tokens of
the same strings (checked to be identical to ours where the tokenizer round-trips).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformer_lens.head_detector import detect_head

from headwiki.detectors.data import ordinary_token_ids, repeat_sequences, resolve_text, text_windows
from headwiki.detectors.peer import TL_HEAD_NAMES, tl_scores
from headwiki.hooks import capture_patterns
from headwiki.models import LoadedModel, load_model

torch.set_num_threads(1)

TOL = 1e-5
N_SEQS = 3  # TL runs every prompt separately with a full cache: keep it small
HALF = 8


def _sequences(loaded: LoadedModel, text: str | None) -> list[str]:
    """Decoded strings of headwiki's repeat sequences and natural-text windows (BOS left to the tokenizer)."""
    tok = loaded.bridge.tokenizer
    vocab = ordinary_token_ids(tok, loaded.info.d_vocab)
    bos = loaded.start.id
    repeats = repeat_sequences(vocab, N_SEQS, HALF, bos, seed=0)
    source = resolve_text(text, loaded.info.source == "toy", N_SEQS * (2 * HALF + 1))
    windows = text_windows(tok, source.passages, N_SEQS, 2 * HALF + 1, bos)
    return [tok.decode(row[1:].tolist()) for row in torch.cat([repeats, windows])]


def _ours(loaded: LoadedModel, strings: list[str], head_name: str, exclude_bos: bool) -> torch.Tensor:
    """Mean over strings of headwiki's batched TL-compatible score; strings grouped by token length."""
    per_seq = []
    tokenized = [loaded.bridge.to_tokens(s)[0].cpu() for s in strings]
    for length in sorted({len(t) for t in tokenized}):
        batch = torch.stack([t for t in tokenized if len(t) == length])
        patterns = capture_patterns(loaded.bridge, batch)
        per_seq.append(tl_scores(patterns, batch, head_name, exclude_bos=exclude_bos).double())
    return torch.cat(per_seq).mean(0)


def _assert_agreement(loaded: LoadedModel, text: str | None = None) -> None:
    strings = _sequences(loaded, text)
    worst = 0.0
    for head_name in TL_HEAD_NAMES:
        for exclude_bos in (False, True):
            theirs = detect_head(loaded.bridge, strings, head_name, exclude_bos=exclude_bos).double()
            ours = _ours(loaded, strings, head_name, exclude_bos)
            assert theirs.shape == ours.shape == (loaded.info.n_layers, loaded.info.n_heads)
            diff = (ours - theirs).abs().max().item()
            worst = max(worst, diff)
            assert diff <= TOL, f"{head_name} exclude_bos={exclude_bos}: max |ours - TL| = {diff:.2e}"
            assert theirs.abs().sum() > 0  # not a vacuous comparison of zeros
    print(f"{loaded.info.name}: max |ours - TL| over 3 head types x 2 settings = {worst:.2e}")


def test_peer_agreement_stories260k(stories_dir: Path) -> None:
    """Real pretrained GQA/rotary Llama; BPE-style tokenizer, so TL's tokens of the strings are used."""
    _assert_agreement(load_model(str(stories_dir), device="cpu"))


def test_peer_agreement_toy() -> None:
    _assert_agreement(load_model("toy", device="cpu"))


def test_stored_tl_columns_equal_detect_head_on_the_pass_sequences(random_gpt2_dir: Path) -> None:
    """The pass's own *_tl values (batched, all heads) equal detect_head on exactly its sequences."""
    from headwiki.detectors.run import build_inputs, compute_detections

    loaded = load_model(str(random_gpt2_dir), device="cpu")
    det = compute_detections(loaded, n_seqs=3, seq_len=HALF, n_boot=100)
    inputs = build_inputs(loaded, 3, HALF, 0, None)
    tok = loaded.bridge.tokenizer
    for column, head_name, kind in (("induction_tl", "induction_head", "repeat"),
                                    ("duplicate_token_tl", "duplicate_token_head", "repeat"),
                                    ("previous_token_tl", "previous_token_head", "text")):
        tokens = inputs.tokens[kind]
        strings = [tok.decode(row[1:].tolist()) for row in tokens]
        assert torch.equal(torch.cat([loaded.bridge.to_tokens(s).cpu() for s in strings]), tokens)  # same sequences
        theirs = detect_head(loaded.bridge, strings, head_name).double().reshape(-1).numpy()
        ours = det.frame[column].to_numpy()
        assert abs(ours - theirs).max() <= TOL, column
