"""headwiki.kernels: the oneDNN GEMM route computes the same function as PyTorch's, is really taken
under inference, steps aside when a gradient is needed, and follows in-place weight edits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from headwiki import kernels
from headwiki.models import load_model


def test_onednn_is_usable_on_this_cpu_build() -> None:
    """The CPU wheel ships oneDNN; if this fails, every pass silently runs at MKL speed."""
    assert torch.backends.mkldnn.is_available()
    assert kernels.onednn_usable()


def test_onednn_linear_equals_f_linear_and_is_batch_invariant() -> None:
    gen = torch.Generator().manual_seed(1)
    x, w, b = torch.randn(3, 50, 64, generator=gen), torch.randn(96, 64, generator=gen), torch.randn(96, generator=gen)
    with torch.inference_mode():
        got = kernels.onednn_linear(x, kernels.pack_weight(w), b)
        alone = kernels.onednn_linear(x[1:2, 7:8], kernels.pack_weight(w), b)
        no_bias = kernels.onednn_linear(x, kernels.pack_weight(w), None)
    want = torch.nn.functional.linear(x.double(), w.double(), b.double()).float()
    assert got.shape == (3, 50, 96)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(no_bias, want - b, atol=1e-4, rtol=1e-5)
    assert torch.equal(alone[0, 0], got[1, 7]), "a row's result must not depend on the rest of its batch"


def _routed(bridge: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in bridge.modules() if "forward" in vars(m)]


def test_loaded_bridge_runs_its_gemms_on_onednn_and_matches_stock_hf(random_gpt2_dir: Path) -> None:
    from transformers import GPT2LMHeadModel

    bridge = load_model(str(random_gpt2_dir), device="cpu").bridge
    routed = _routed(bridge)
    # per layer: the bridge's split q, k, v + HF's c_attn, attn c_proj, c_fc, mlp c_proj; plus lm_head
    assert len(routed) == 2 * 7 + 1
    kernels._PACKED.clear()
    tokens = torch.randint(0, 64, (2, 12))
    with torch.inference_mode():
        ours = bridge(tokens)
    assert len(kernels._PACKED) >= 2 * 6 + 1, "the forward must have gone through the packed-weight route"
    stock = GPT2LMHeadModel.from_pretrained(random_gpt2_dir).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours, stock(tokens).logits, atol=1e-5, rtol=0)


def test_gradients_use_pytorch_kernels_and_are_exact(random_gpt2_dir: Path) -> None:
    """With autograd on (training, attribution patching) the class's own forward runs: same grads as stock."""
    from transformers import GPT2LMHeadModel

    bridge = load_model(str(random_gpt2_dir), device="cpu").bridge
    kernels._PACKED.clear()
    tokens = torch.randint(0, 64, (2, 12))
    bridge(tokens).sum().backward()
    assert len(kernels._PACKED) == 0, "nothing may be packed while gradients are needed"
    stock = GPT2LMHeadModel.from_pretrained(random_gpt2_dir).eval()
    stock(tokens).logits.sum().backward()
    ours_grad = bridge.original_model.transformer.h[0].mlp.c_fc.original_component.weight.grad
    torch.testing.assert_close(ours_grad, stock.transformer.h[0].mlp.c_fc.weight.grad, atol=1e-4, rtol=1e-4)


def test_in_place_weight_edit_is_seen_by_the_packed_route() -> None:
    lin = torch.nn.Linear(16, 8)
    assert kernels.use_onednn_linears(lin) == 1
    x = torch.randn(4, 16)
    with torch.inference_mode():
        before = lin(x)
    with torch.no_grad():
        lin.weight.mul_(2.0)
        lin.bias.zero_()
    with torch.inference_mode():
        after = lin(x)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, x @ lin.weight.T, atol=1e-5, rtol=0)


def test_switch_off_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWIKI_ONEDNN", "0")
    kernels.onednn_usable.cache_clear()
    try:
        assert kernels.use_onednn_linears(torch.nn.Linear(4, 4)) == 0
    finally:
        monkeypatch.delenv("HEADWIKI_ONEDNN")
        kernels.onednn_usable.cache_clear()
    assert kernels.use_onednn_linears(torch.nn.Linear(4, 4)) == 1
