"""Faster CPU kernels for the same functions, swapped into a loaded model in place.

* :func:`fuse_activations` (always on): HF's Python-level tanh-GELU (~8 elementwise kernels) ->
  PyTorch's one fused ``gelu(approximate="tanh")``, the same function (max |diff| ~3e-7 in float32).
* :func:`use_onednn_linears` (OFF by default; opt in with ``HEADWIKI_ONEDNN=1``): float32
  ``nn.Linear`` / HF ``Conv1D`` GEMMs on the CPU go through oneDNN whenever no gradient is needed.
  PyTorch's default CPU GEMM is MKL's sgemm, which on AMD CPUs runs a slower code path
  (``benchmarks/bench_gemm.py``). Same function (fp32 accumulate; ~1e-5 relative), batch-invariant.

  Correctness: the weight is packed into oneDNN's layout **on every call** from the module's current
  weight, so any edit of the weights (``w.data.zero_()``, ``load_state_dict``, ``copy_``) is honoured:
  there is no cached copy that could go stale. (A cache keyed on ``tensor._version`` is NOT enough:
  edits through ``.data`` do not bump the version counter.)

  Memory: no persistent copies; one transient packed copy of the weight being multiplied (at most
  the largest single weight, e.g. 9.4 MB for GPT-2 small's [3072, 768] MLP matrices; 154 MB for its
  [50257, 768] unembedding) lives for the duration of one GEMM. The earlier per-module cache kept
  one packed copy of every weight (~470 MB for a GPT-2-small-sized model).

  Speed: repacking costs a copy of the weight per call, so the gain grows with the rows per GEMM
  (measured on the project's 2-core AMD EPYC: at 1040 rows x [3072, 768] 160 ms MKL vs 125 ms
  oneDNN repacked; at 64 rows about break-even). Training and attribution patching (grad needed)
  always keep PyTorch's own kernel. Whether it was used is recorded in each run's provenance
  (:func:`describe`).
"""

from __future__ import annotations

import functools
import logging
import os
import types
from typing import Any

import torch

log = logging.getLogger(__name__)

# oneDNN picks its packed-weight layout from a batch-size hint; one fixed hint keeps every call on the
# same layout, which makes results independent of how many rows a batch has (batch invariance).
PACK_HINT_ROWS = 1024
_ENV_SWITCH = "HEADWIKI_ONEDNN"
_TRUE = ("1", "true", "yes", "on")


def onednn_requested() -> bool:
    """True when the user opted in to the oneDNN GEMM route (``HEADWIKI_ONEDNN=1``); off by default."""
    return os.environ.get(_ENV_SWITCH, "").strip().lower() in _TRUE


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


def _fast_forward(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Instance-level forward for Linear / Conv1D: oneDNN when it applies, else the class's own forward."""
    weight = module.weight
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if needs_grad or x.device.type != "cpu" or x.dtype != torch.float32 or weight.device.type != "cpu" or weight.dtype != torch.float32:
        return type(module).forward(module, x)
    w_out_in = weight if isinstance(module, torch.nn.Linear) else weight.T  # HF Conv1D stores [d_in, d_out]
    return onednn_linear(x, pack_weight(w_out_in), module.bias)  # packed now: never a stale copy


def _linear_types() -> tuple[type, ...]:
    from transformers.pytorch_utils import Conv1D

    return (torch.nn.Linear, Conv1D)


def use_onednn_linears(model: torch.nn.Module) -> int:
    """Route ``model``'s float32 CPU Linear / Conv1D forwards through oneDNN when no grad is needed.

    In place (an instance-level ``forward``), so wrappers holding these modules (TransformerBridge's
    LinearBridge) call the fast path too. Returns how many modules were routed (0 when oneDNN is
    unusable here). Callers decide whether to use it (:func:`speed_up` asks :func:`onednn_requested`).
    """
    if not onednn_usable():
        return 0
    routed = 0
    for module in model.modules():
        if isinstance(module, _linear_types()) and "forward" not in vars(module):
            module.forward = types.MethodType(_fast_forward, module)
            routed += 1
    return routed


def speed_up(model: Any, onednn: bool | None = None) -> dict[str, int]:
    """Apply the kernel swaps above to a booted model (a TransformerBridge or a bare HF model).

    The fused GELU always; the oneDNN GEMM route only when ``onednn`` is True (None: when the user
    opted in with ``HEADWIKI_ONEDNN=1``)."""
    root = getattr(model, "original_model", model)
    use_onednn = onednn_requested() if onednn is None else onednn
    return {"fused_activations": fuse_activations(root), "onednn_linears": use_onednn_linears(model) if use_onednn else 0}


def describe(model: Any) -> dict[str, Any]:
    """What kernels ``model`` runs on, for a run's provenance: ``{"onednn_linears": n modules routed,
    "fused_gelu": n activations fused, "onednn": bool}`` (read from the model itself)."""
    root = getattr(model, "original_model", model)
    routed = sum(1 for m in model.modules() if getattr(vars(m).get("forward"), "__func__", None) is _fast_forward)
    fused = sum(1 for m in root.modules() if isinstance(m, FusedTanhGELU))
    return {"onednn": routed > 0, "onednn_linears": routed, "fused_gelu": fused}
