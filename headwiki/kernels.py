"""Faster CPU kernels for the same functions, swapped into a loaded model in place.

* :func:`fuse_activations`: HF's Python-level tanh-GELU (~8 elementwise kernels) -> PyTorch's one
  fused ``gelu(approximate="tanh")`` (max |diff| ~3e-7 in float32).
* :func:`use_onednn_linears`: float32 ``nn.Linear`` / HF ``Conv1D`` GEMMs on the CPU go through
  oneDNN with a pre-packed weight whenever no gradient is needed. PyTorch's default CPU GEMM is
  MKL's sgemm, which on AMD CPUs runs a slower code path: on this project's 2-core AMD EPYC (Zen 5,
  AVX-512) oneDNN with packed weights reaches 330-400 GFLOP/s on GPT-2 shapes against MKL's 140-190
  (``benchmarks/bench_gemm.py``). Same function (fp32 accumulate; max |diff| from float64 2-3x MKL's,
  ~1e-5 relative), batch-invariant (a row's result does not depend on the other rows of its batch).
  Costs one packed copy of each weight that is used (cached per module, repacked when the weight
  changes). Training and attribution patching (grad needed) keep PyTorch's own kernel.
  ``HEADWIKI_ONEDNN=0`` turns it off.
"""

from __future__ import annotations

import functools
import logging
import os
import types
import weakref
from typing import Any

import torch

log = logging.getLogger(__name__)

# oneDNN picks its packed-weight layout from a batch-size hint; one fixed hint keeps every call on the
# same layout, which makes results independent of how many rows a batch has (batch invariance).
PACK_HINT_ROWS = 1024
_ENV_SWITCH = "HEADWIKI_ONEDNN"


class FusedTanhGELU(torch.nn.Module):
    """``gelu(x, approximate="tanh")`` in one PyTorch kernel: the same function as HF's ``gelu_new`` /
    ``gelu_fast`` (written there as ~8 separate elementwise ops), within float rounding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x, approximate="tanh")


def fuse_activations(model: torch.nn.Module) -> int:
    """Replace HF's Python-level tanh-GELU modules in ``model`` by :class:`FusedTanhGELU`, in place.

    One pass over the [tokens, 4 d_model] MLP activations instead of eight (a batched GPT-2-small
    body forward: 5-13% less time on 2 CPU cores). Returns how many modules were swapped.
    """
    from transformers.activations import FastGELUActivation, NewGELUActivation

    swapped = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) in (NewGELUActivation, FastGELUActivation):
                setattr(parent, child_name, FusedTanhGELU())
                swapped += 1
    return swapped


def onednn_linear(x: torch.Tensor, packed_weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x [..., d_in] (float32, CPU) @ W.T + b with a weight packed by :func:`pack_weight` -> [..., d_out]."""
    rows = x.reshape(-1, x.shape[-1]).contiguous()  # oneDNN's strided fallback is ~5x slower
    out = torch.ops.mkldnn._linear_pointwise(rows, packed_weight, bias, "none", [], "")
    return out.view(*x.shape[:-1], out.shape[-1])


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """W [d_out, d_in] (float32, CPU) -> oneDNN's blocked layout for :func:`onednn_linear`."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), PACK_HINT_ROWS)


@functools.cache
def onednn_usable() -> bool:
    """True when oneDNN's packed linear exists here and agrees with ``F.linear`` (checked once)."""
    if os.environ.get(_ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(shape, generator=gen) for shape in ((37, 96), (80, 96), (80,)))
        with torch.inference_mode():
            got = onednn_linear(x[None], pack_weight(w), b)[0]
        want = (x.double() @ w.double().T + b.double()).float()
        ok = bool(torch.allclose(got, want, atol=1e-4, rtol=1e-5))
    except (RuntimeError, AttributeError) as exc:  # an op missing or refused in this torch build
        log.info("oneDNN linear unavailable: %s", exc)
        return False
    if not ok:
        log.warning("oneDNN linear disagrees with F.linear on this machine: keeping PyTorch's GEMM")
    return ok


_PACKED: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple[int, int], torch.Tensor]] = weakref.WeakKeyDictionary()


def _packed_for(module: torch.nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """The module's packed weight, repacked when the weight's storage or version changed."""
    key = (weight.data_ptr(), weight._version)
    cached = _PACKED.get(module)
    if cached is None or cached[0] != key:
        cached = (key, pack_weight(weight))
        _PACKED[module] = cached
    return cached[1]


def _fast_forward(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Instance-level forward for Linear / Conv1D: oneDNN when it applies, else the class's own forward."""
    weight = module.weight
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if needs_grad or x.device.type != "cpu" or x.dtype != torch.float32 or weight.device.type != "cpu" or weight.dtype != torch.float32:
        return type(module).forward(module, x)
    w_out_in = weight if isinstance(module, torch.nn.Linear) else weight.T  # HF Conv1D stores [d_in, d_out]
    return onednn_linear(x, _packed_for(module, w_out_in), module.bias)


def _linear_types() -> tuple[type, ...]:
    from transformers.pytorch_utils import Conv1D

    return (torch.nn.Linear, Conv1D)


def use_onednn_linears(model: torch.nn.Module) -> int:
    """Route ``model``'s float32 CPU Linear / Conv1D forwards through oneDNN when no grad is needed.

    In place (an instance-level ``forward``), so wrappers holding these modules (TransformerBridge's
    LinearBridge) call the fast path too. Returns how many modules were routed (0 when oneDNN is
    unusable here or ``HEADWIKI_ONEDNN=0``).
    """
    if not onednn_usable():
        return 0
    routed = 0
    for module in model.modules():
        if isinstance(module, _linear_types()) and "forward" not in vars(module):
            module.forward = types.MethodType(_fast_forward, module)
            routed += 1
    return routed


def release_packed(model: Any) -> int:
    """Drop the cached packed weights of ``model``'s modules (they are rebuilt on the next forward).

    Frees about one weight-size of memory, e.g. while a second model (a random-init control) runs."""
    dropped = 0
    for module in getattr(model, "modules", lambda: [])():
        if _PACKED.pop(module, None) is not None:
            dropped += 1
    return dropped


def speed_up(model: Any) -> dict[str, int]:
    """Apply every kernel swap above to a booted model (a TransformerBridge or a bare HF model)."""
    root = getattr(model, "original_model", model)
    return {"fused_activations": fuse_activations(root), "onednn_linears": use_onednn_linears(model)}
