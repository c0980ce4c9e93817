"""Model loading: every source goes through one function and yields causal, normalised patterns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from headwiki.errors import HeadwikiError
from headwiki.hooks import capture_patterns, reduce_patterns
from headwiki.kernels import FusedTanhGELU
from headwiki.models import load_model, resolve_source


def _check_patterns(spec: str, text: str) -> None:
    loaded = load_model(spec, device="cpu")
    info = loaded.info
    tokens = loaded.bridge.to_tokens([text, text])
    patterns = capture_patterns(loaded.bridge, tokens)
    b, s = tokens.shape
    assert patterns.shape == (b, info.n_layers, info.n_heads, s, s)
    torch.testing.assert_close(patterns.sum(-1), torch.ones(b, info.n_layers, info.n_heads, s), atol=1e-5, rtol=0)
    upper = torch.triu(torch.ones(s, s, dtype=torch.bool), diagonal=1)
    assert patterns[..., upper].abs().max().item() == 0.0, "attention to future positions"
    assert info.n_params > 0 and len(info.revision) >= 8


def test_random_gpt2_dir_loads_like_a_hub_model(random_gpt2_dir: Path) -> None:
    _check_patterns(str(random_gpt2_dir), "w1 w2 w3 w4 w5 w6")
    info = load_model(str(random_gpt2_dir), device="cpu").info
    assert info.source == "local" and info.architecture == "GPT2LMHeadModel"
    assert (info.n_layers, info.n_heads, info.n_kv_heads, info.d_head) == (2, 4, 4, 16)


def test_fused_gelu_is_used_and_matches_the_stock_model(random_gpt2_dir: Path) -> None:
    """load_model swaps GPT-2's Python tanh-GELU for the fused kernel; the bridge really calls it and
    its logits equal the unmodified HF model's on the same tokens."""
    from transformers import GPT2LMHeadModel

    bridge = load_model(str(random_gpt2_dir), device="cpu").bridge
    fused = [m for m in bridge.original_model.modules() if isinstance(m, FusedTanhGELU)]
    assert len(fused) == 2, "one fused activation per layer"
    calls: list[int] = []
    for m in fused:
        m.register_forward_hook(lambda *_: calls.append(1))
    tokens = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        ours = bridge(tokens)
        stock = GPT2LMHeadModel.from_pretrained(random_gpt2_dir).eval()(tokens).logits
    assert len(calls) == 2, "the bridge's forward must go through the fused activation"
    assert "NewGELU" in type(GPT2LMHeadModel.from_pretrained(random_gpt2_dir).transformer.h[0].mlp.act).__name__
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=0)


def test_per_layer_reduction_equals_reducing_the_captured_stack(random_llama_dir: Path) -> None:
    """reduce_patterns (scores computed inside each layer's hook) gives exactly what reducing the full stack gives."""
    bridge = load_model(str(random_llama_dir), device="cpu").bridge
    tokens = bridge.to_tokens(["w1 w2 w3 w1 w2 w3", "w4 w5 w4 w5 w6 w7"])
    stack = capture_patterns(bridge, tokens)  # [b, L, H, s, s]

    def reduce(pattern: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"prev": pattern.diagonal(-1, -2, -1).mean(-1), "row": pattern[..., -1, :]}

    out = reduce_patterns(bridge, tokens, reduce)
    assert out["prev"].shape == stack.shape[:3] and out["row"].shape == stack.shape[:3] + (tokens.shape[1],)
    torch.testing.assert_close(out["prev"], stack.diagonal(-1, -2, -1).mean(-1), atol=0, rtol=0)
    torch.testing.assert_close(out["row"], stack[..., -1, :], atol=0, rtol=0)


def test_random_llama_gqa_rotary_dir(random_llama_dir: Path) -> None:
    _check_patterns(str(random_llama_dir), "w1 w2 w3 w4 w5 w6 w7")
    info = load_model(str(random_llama_dir), device="cpu").info
    assert info.n_kv_heads == 2 and info.n_heads == 4
    assert info.positional_embedding == "rotary"


def test_shared_stories260k(stories_dir: Path) -> None:
    _check_patterns(str(stories_dir), "Once upon a time there was a little cat.")
    info = load_model(str(stories_dir), device="cpu").info
    assert (info.n_layers, info.n_heads, info.n_kv_heads) == (5, 8, 4)


def test_toy_model_loads() -> None:
    _check_patterns("toy", "a robin is a bird .")
    info = load_model("toy", device="cpu").info
    assert info.source == "toy" and info.architecture == "GPT2LMHeadModel"


def test_toy_tokenizer_prepends_exactly_one_bos() -> None:
    bridge = load_model("toy", device="cpu").bridge
    tokens = bridge.to_tokens("a robin is a bird .")
    bos = bridge.tokenizer.bos_token_id
    assert tokens[0, 0].item() == bos and (tokens[0] == bos).sum().item() == 1


def test_missing_local_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HeadwikiError, match="does not exist"):
        resolve_source(str(tmp_path / "nope" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(HeadwikiError, match="no config.json"):
        resolve_source(str(tmp_path / "empty"))


def test_bad_device_and_dtype_are_clear_errors(random_gpt2_dir: Path) -> None:
    with pytest.raises(HeadwikiError, match="--dtype"):
        load_model(str(random_gpt2_dir), dtype="float8")
    with pytest.raises(HeadwikiError, match="--device"):
        load_model(str(random_gpt2_dir), device="tpu")


def _headwiki(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headwiki.cli", *args], capture_output=True, text=True, env=env, timeout=300)


def test_not_cached_hub_model_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    result = _headwiki(["info", "--model", "gpt2"], env)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "gpt2" in lines[0] and "not in the HuggingFace cache" in lines[0] and "local directory" in lines[0]


def test_info_json_cli(random_llama_dir: Path) -> None:
    result = _headwiki(["info", "--model", str(random_llama_dir), "--json"], dict(os.environ))
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)[0]
    assert record["n_kv_heads"] == 2 and record["architecture"] == "LlamaForCausalLM"
