"""GGUF as a model source: bad files fail in one line before any load; SmolLM2 loads and matches transformers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from headwiki.errors import HeadwikiError
from headwiki.gguf_source import read_gguf_meta, supported_architectures
from headwiki.models import resolve_source


def _write_gguf(path: Path, arch: str) -> Path:
    """A tiny valid GGUF (one F32 tensor) with general.architecture = `arch`."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.arange(4096, dtype=np.float32).reshape(64, 64))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "headwiki.cli", *args], capture_output=True, text=True, timeout=120)


def test_missing_gguf_is_one_line_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(HeadwikiError, match="does not exist"):
        resolve_source(str(missing))
    proc = _cli("info", "--model", str(missing))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("headwiki: error: GGUF file") and "fetch_smollm2" in lines[0]


def test_unsupported_architecture_names_the_supported_ones(tmp_path: Path) -> None:
    bad = _write_gguf(tmp_path / "weird.gguf", "notanarch")
    with pytest.raises(HeadwikiError, match="notanarch") as err:
        read_gguf_meta(bad)
    assert "llama" in str(err.value) and "gpt2" in str(err.value)
    assert "general" not in supported_architectures()
    proc = _cli("detect", "--model", str(bad), "--db", str(tmp_path / "x.duckdb"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "cannot dequantize" in proc.stderr and "supported GGUF architectures are" in proc.stderr
    assert not (tmp_path / "x.duckdb").exists(), "nothing is written for a model that cannot load"


def test_truncated_gguf_is_one_line_exit_2(tmp_path: Path) -> None:
    whole = _write_gguf(tmp_path / "whole.gguf", "llama")
    meta = read_gguf_meta(whole)  # the intact file passes validation
    assert meta.architecture == "llama" and meta.n_tensors == 1 and len(meta.sha256) == 64 and "F32 x1" in meta.quantization
    data = whole.read_bytes()
    for keep in (len(data) - 1000, 100):  # tensor data cut short; header cut short
        cut = tmp_path / f"cut{keep}.gguf"
        cut.write_bytes(data[:keep])
        with pytest.raises(HeadwikiError, match="truncated|not a readable GGUF"):
            read_gguf_meta(cut)
    proc = _cli("info", "--model", str(tmp_path / "cut100.gguf"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "download it again" in proc.stderr


def test_directory_with_one_gguf_resolves_to_it(tmp_path: Path) -> None:
    _write_gguf(tmp_path / "m.gguf", "llama")
    name, source, path = resolve_source(str(tmp_path))
    assert (name, source, Path(path).name) == ("m", "gguf", "m.gguf")
    _write_gguf(tmp_path / "n.gguf", "llama")
    with pytest.raises(HeadwikiError, match="holds 2 .gguf files"):
        resolve_source(str(tmp_path))


# ---- the real model (scripts/fetch_smollm2.sh) ------------------------------------------------------

@pytest.mark.slow
def test_truncated_real_gguf_fails_before_loading(smollm2_gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "SmolLM2-cut.gguf"
    with smollm2_gguf.open("rb") as src, cut.open("wb") as dst:
        dst.write(src.read(1 << 20))
    proc = _cli("info", "--model", str(cut))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "not a readable GGUF" in proc.stderr or "truncated" in proc.stderr


@pytest.mark.slow
def test_smollm2_gguf_loads_and_matches_transformers(smollm2, smollm2_gguf: Path) -> None:
    """Same logits (1e-4) as transformers' own dequantized model loaded independently; ModelInfo records
    the GGUF's digest, quantization and float dtype; GQA: 9 query heads share 3 KV heads."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = smollm2.info
    assert info.source == "gguf" and info.architecture.startswith("Llama")
    assert (info.n_layers, info.n_heads, info.n_kv_heads, info.d_model, info.d_head) == (30, 9, 3, 576, 64)
    assert info.quantization.startswith("MOSTLY_Q4_1") and "Q4_1 x" in info.quantization
    assert info.dequantized_dtype == "float32" and info.revision == info.file_sha256[:16]
    import hashlib

    assert info.file_sha256 == hashlib.sha256(smollm2_gguf.read_bytes()).hexdigest()
    folder, name = str(smollm2_gguf.parent), smollm2_gguf.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    ref = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, attn_implementation="eager").eval()
    ids = tok("When Mary and John went to the store, John gave a drink to", return_tensors="pt")["input_ids"]
    ids = torch.cat([torch.tensor([[tok.bos_token_id]]), ids], dim=1)
    with torch.no_grad():
        ours = smollm2.bridge(ids)
        theirs = ref(ids).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    assert int(ours[0, -1].argmax()) == int(theirs[0, -1].argmax())
    # GQA: per-query-head z and patterns; the 3 KV heads are shared by groups of 3 query heads
    _, cache = smollm2.bridge.run_with_cache(ids, names_filter=lambda n: n in ("blocks.3.attn.hook_z", "blocks.3.attn.hook_pattern"))
    assert cache["blocks.3.attn.hook_z"].shape == (1, ids.shape[1], 9, 64)
    assert cache["blocks.3.attn.hook_pattern"].shape == (1, 9, ids.shape[1], ids.shape[1])
    assert ref.model.layers[3].self_attn.k_proj.weight.shape == (3 * 64, 576)
