"""Memory (issue 17): the random-init control does not sit beside the model at full size twice over.

While the control runs, the model's packed oneDNN weight copies are dropped (rebuilt on its next
forward) and the control itself gets no packed copy: model + control, not model + packed + control + packed.
Peak RSS numbers are in benchmarks/bench_detect_memory.py (measurements, not assertions).
"""

from __future__ import annotations

from pathlib import Path

import torch

from headwiki.kernels import _PACKED, _linear_types, onednn_usable, release_packed


def _packed_modules(model: torch.nn.Module) -> int:
    return sum(1 for m in model.modules() if m in _PACKED)


def test_release_packed_drops_the_models_packed_weights_and_they_come_back(random_gpt2_dir: Path) -> None:
    from headwiki.models import load_model

    loaded = load_model(str(random_gpt2_dir), device="cpu")
    tokens = torch.tensor([[1, 5, 6, 7, 5, 6, 7]])
    with torch.no_grad():
        before = loaded.bridge(tokens)
    assert onednn_usable() and _packed_modules(loaded.bridge) > 0
    assert release_packed(loaded.bridge) > 0 and _packed_modules(loaded.bridge) == 0
    with torch.no_grad():
        after = loaded.bridge(tokens)
    assert _packed_modules(loaded.bridge) > 0 and torch.allclose(before, after, atol=1e-5)


def test_the_control_model_gets_no_packed_weight_copies(random_gpt2_dir: Path) -> None:
    from headwiki.detectors.controls import build_control_bridge
    from headwiki.models import load_model

    loaded = load_model(str(random_gpt2_dir), device="cpu")
    control = build_control_bridge(str(random_gpt2_dir), loaded.bridge.tokenizer, "cpu", seed=0)
    linears = [m for m in control.original_model.modules() if isinstance(m, _linear_types())]
    assert linears and not any("forward" in vars(m) for m in linears)  # PyTorch's GEMM, nothing packed
    with torch.no_grad():
        control(torch.tensor([[1, 5, 6, 7]]))
    assert _packed_modules(control) == 0
