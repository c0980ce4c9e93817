"""Memory (issue 17): the random-init control does not sit beside the model at full size twice over.

No packed oneDNN weight copies are kept (the opt-in route repacks per call) and the control model is never
routed through it: detect holds model + control, not model + packed + control + packed.
Peak RSS numbers are in benchmarks/bench_detect_memory.py (measurements, not assertions).
"""

from __future__ import annotations

from pathlib import Path

import torch

from headwiki.kernels import _linear_types


def test_the_control_model_gets_no_packed_weight_copies(random_gpt2_dir: Path) -> None:
    from headwiki.detectors.controls import build_control_bridge
    from headwiki.models import load_model

    loaded = load_model(str(random_gpt2_dir), device="cpu")
    control = build_control_bridge(str(random_gpt2_dir), loaded.bridge.tokenizer, "cpu", seed=0)
    linears = [m for m in control.original_model.modules() if isinstance(m, _linear_types())]
    assert linears and not any("forward" in vars(m) for m in linears)  # PyTorch's GEMM, nothing packed
    with torch.no_grad():
        control(torch.tensor([[1, 5, 6, 7]]))
    assert not any("forward" in vars(m) for m in linears)  # still nothing packed after a forward
