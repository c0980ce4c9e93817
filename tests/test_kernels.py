"""headwiki.kernels: stock PyTorch GEMMs by default; the opt-in oneDNN route (HEADWIKI_ONEDNN=1) computes the
same function as PyTorch's, is really taken under inference, steps aside when a gradient is needed, honours
weights edited in place (also through ``.data``), and each run records which kernels it used."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from headwiki import kernels
from headwiki.models import load_model


def test_onednn_is_usable_on_this_cpu_build() -> None:
    """The CPU wheel ships oneDNN; if this fails, HEADWIKI_ONEDNN=1 silently runs at MKL speed."""
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


@pytest.fixture()
def onednn_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opt in to the oneDNN route (HEADWIKI_ONEDNN=1) for one test."""
    monkeypatch.setenv("HEADWIKI_ONEDNN", "1")


class PackCounter:
    """Counts calls of kernels.pack_weight (a spy: the real function still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = kernels.pack_weight

        def counting(weight: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return real(weight)

        monkeypatch.setattr(kernels, "pack_weight", counting)


def test_stock_pytorch_by_default(monkeypatch: pytest.MonkeyPatch, random_gpt2_dir: Path) -> None:
    monkeypatch.delenv("HEADWIKI_ONEDNN", raising=False)
    loaded = load_model(str(random_gpt2_dir), device="cpu")
    assert _routed(loaded.bridge) == []
    assert kernels.describe(loaded.bridge) == {"onednn": False, "onednn_linears": 0, "fused_gelu": 2}
    assert kernels.use_onednn_linears(torch.nn.Linear(4, 4)) == 1  # available, only not chosen


def test_loaded_bridge_runs_its_gemms_on_onednn_and_matches_stock_hf(
        onednn_on: None, monkeypatch: pytest.MonkeyPatch, random_gpt2_dir: Path) -> None:
    from transformers import GPT2LMHeadModel

    bridge = load_model(str(random_gpt2_dir), device="cpu").bridge
    routed = _routed(bridge)
    # per layer: the bridge's split q, k, v + HF's c_attn, attn c_proj, c_fc, mlp c_proj; plus lm_head
    assert len(routed) == 2 * 7 + 1
    assert kernels.describe(bridge) == {"onednn": True, "onednn_linears": 15, "fused_gelu": 2}
    packs = PackCounter(monkeypatch)
    tokens = torch.randint(0, 64, (2, 12))
    with torch.inference_mode():
        ours = bridge(tokens)
    assert packs.calls >= 2 * 4 + 1, "the forward must have gone through the packed-weight route"
    stock = GPT2LMHeadModel.from_pretrained(random_gpt2_dir).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours, stock(tokens).logits, atol=1e-5, rtol=0)


def test_gradients_use_pytorch_kernels_and_are_exact(
        onednn_on: None, monkeypatch: pytest.MonkeyPatch, random_gpt2_dir: Path) -> None:
    """With autograd on (training, attribution patching) the class's own forward runs: same grads as stock."""
    from transformers import GPT2LMHeadModel

    bridge = load_model(str(random_gpt2_dir), device="cpu").bridge
    packs = PackCounter(monkeypatch)
    tokens = torch.randint(0, 64, (2, 12))
    bridge(tokens).sum().backward()
    assert packs.calls == 0, "nothing may be packed while gradients are needed"
    stock = GPT2LMHeadModel.from_pretrained(random_gpt2_dir).eval()
    stock(tokens).logits.sum().backward()
    ours_grad = bridge.original_model.transformer.h[0].mlp.c_fc.original_component.weight.grad
    torch.testing.assert_close(ours_grad, stock.transformer.h[0].mlp.c_fc.weight.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("edit", ["data_zero", "no_grad_mul", "load_state_dict"])
def test_weights_edited_in_place_are_honoured(onednn_on: None, random_gpt2_dir: Path, edit: str) -> None:
    """The review's reproduction: after `c_proj.weight.data.zero_()` the no-grad logits must change, and equal
    a stock HF model with the same edit. `.data` edits do not bump the version counter, so no cache may be trusted."""
    from transformers import GPT2LMHeadModel

    bridge = load_model(str(random_gpt2_dir), device="cpu").bridge
    assert kernels.describe(bridge)["onednn"]
    stock = GPT2LMHeadModel.from_pretrained(random_gpt2_dir).eval()
    tokens = torch.randint(0, 64, (2, 12))
    ours_proj = bridge.original_model.transformer.h[1].mlp.c_proj.original_component
    with torch.no_grad():
        before = bridge(tokens)
        for proj in (ours_proj, stock.transformer.h[1].mlp.c_proj):
            if edit == "data_zero":
                proj.weight.data.zero_()
            elif edit == "no_grad_mul":
                proj.weight.mul_(-3.0)
            else:
                proj.load_state_dict({"weight": torch.full_like(proj.weight, 0.01), "bias": proj.bias})
        after = bridge(tokens)
        want = stock(tokens).logits
    assert not torch.allclose(after, before, atol=1e-4)
    torch.testing.assert_close(after, want, atol=1e-5, rtol=0)


def test_in_place_weight_edit_is_seen_by_the_packed_route() -> None:
    lin = torch.nn.Linear(16, 8)
    assert kernels.use_onednn_linears(lin) == 1
    x = torch.randn(4, 16)
    with torch.inference_mode():
        before = lin(x)
    with torch.no_grad():
        lin.weight.data.mul_(2.0)
        lin.bias.data.zero_()
    with torch.inference_mode():
        after = lin(x)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, x @ lin.weight.T, atol=1e-5, rtol=0)


def test_opt_in_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, on in (("", False), ("0", False), ("1", True), ("true", True)):
        monkeypatch.setenv("HEADWIKI_ONEDNN", value)
        model = torch.nn.Sequential(torch.nn.Linear(4, 4))
        assert kernels.speed_up(model)["onednn_linears"] == (1 if on else 0)
        assert kernels.describe(model)["onednn"] is on


def test_runs_record_which_kernels_they_used(onednn_on: None, random_gpt2_dir: Path, tmp_path: Path) -> None:
    import json

    from headwiki.db.store import reading
    from headwiki.detectors.run import detect_model

    db = tmp_path / "k.duckdb"
    detect_model(load_model(str(random_gpt2_dir), device="cpu"), db, n_seqs=4, seq_len=6)
    with reading(db) as con:
        prov = json.loads(con.execute("SELECT provenance FROM runs").fetchall()[0][0])
    assert prov["kernels"] == {"onednn": True, "onednn_linears": 15, "fused_gelu": 2}
