"""The start-token option (`--bos`, issue 23): resolution, every pass feeding it at position 0, provenance, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from headwiki.errors import HeadwikiError
from headwiki.random_models import BOS, EOS, PAD, build_word_tokenizer
from headwiki.start_token import cli_flag, describe, resolve_start_token


@pytest.fixture(scope="module")
def tokenizer():
    return build_word_tokenizer([PAD, BOS, EOS, "<unk>", "w0", "w1", "w2"])


def test_resolution_of_every_choice(tokenizer) -> None:
    vocab = tokenizer.get_vocab()
    auto = resolve_start_token(tokenizer, 7)
    assert (auto.id, auto.text, auto.choice, auto.is_auto) == (vocab[BOS], BOS, "auto", True)
    assert resolve_start_token(tokenizer, 7, "bos").id == vocab[BOS]
    assert resolve_start_token(tokenizer, 7, "eos").id == vocab[EOS]
    assert resolve_start_token(tokenizer, 7, PAD).id == vocab[PAD]
    by_id = resolve_start_token(tokenizer, 7, "4")
    assert (by_id.id, by_id.text, by_id.why) == (4, "w0", "token id")
    rec = resolve_start_token(tokenizer, 7, EOS).record()
    assert describe(rec).startswith(EOS) and cli_flag(rec) == f"--bos '{EOS}'" and cli_flag(auto.record()) == ""


@pytest.mark.parametrize("choice, words", [
    ("<nope>", "not a token of this model's vocabulary"),
    ("99", "outside the model's vocabulary"),
    (" eos", "padded with spaces"),
    ("", "empty"),
])
def test_bad_choices_are_one_clear_line(tokenizer, choice: str, words: str) -> None:
    with pytest.raises(HeadwikiError, match=words) as err:
        resolve_start_token(tokenizer, 7, choice)
    assert "\n" not in str(err.value) and "--bos" in str(err.value)


@pytest.mark.slow
def test_every_pass_starts_with_the_chosen_token(random_llama_dir: Path, tmp_path: Path) -> None:
    """A random-init Llama with --bos <eos>: the negation encoder, the detector inputs and the validation tokens put
    <eos> at position 0; detect records the choice in its params (so its fingerprint) and the provenance page shows it."""
    from headwiki.ablation.scoring import bridge_encoder
    from headwiki.db.store import reading
    from headwiki.detectors.run import build_inputs, detect_model
    from headwiki.models import load_model
    from headwiki.wiki.render import render_site

    auto = load_model(str(random_llama_dir), device="cpu")
    eos = load_model(str(random_llama_dir), device="cpu", bos=EOS)
    vocab = eos.bridge.tokenizer.get_vocab()
    assert auto.start.id == vocab[BOS] and eos.start.id == vocab[EOS]
    text = ["w1 w2 w3"]
    words = [vocab["w1"], vocab["w2"], vocab["w3"]]
    assert bridge_encoder(auto.bridge, auto.start)(text) == [[vocab[BOS], *words]] == bridge_encoder(auto.bridge)(text)
    assert bridge_encoder(eos.bridge, eos.start)(text) == [[vocab[EOS], *words]]
    inputs = build_inputs(eos, 3, 4, 0, None)
    assert all((t[:, 0] == vocab[EOS]).all() for t in inputs.tokens.values())

    db = tmp_path / "bos.duckdb"
    detect_model(eos, db, n_seqs=4, seq_len=4)
    with reading(db) as con:
        params = json.loads(con.execute("SELECT params FROM runs WHERE pass_name = 'detect'").fetchall()[0][0])
    assert params["start_token"] == {"id": vocab[EOS], "text": EOS, "choice": EOS, "why": "token string"}
    render_site(db, tmp_path / "site")
    page = (tmp_path / "site" / "provenance.html").read_text()
    assert "start token" in page and f"id {vocab[EOS]}; --bos {EOS}".replace("<", "&lt;").replace(">", "&gt;") in page


@pytest.mark.slow
def test_unknown_start_token_exits_2_before_any_pass(random_llama_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "none.duckdb"
    proc = subprocess.run([sys.executable, "-m", "headwiki.cli", "detect", "--model", str(random_llama_dir), "--db", str(db),
                           "--bos", "<|im_start|>"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("headwiki: error: --bos '<|im_start|>' is not a token")
    assert not db.exists()
