"""One batching helper: split a [n, ...] tensor or list into fixed-size chunks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

import torch

T = TypeVar("T")


def chunks(n: int, batch_size: int) -> Iterator[slice]:
    """Slices covering range(n) in order, each at most `batch_size` long."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def batched(items: Sequence[T] | torch.Tensor, batch_size: int) -> Iterator[Sequence[T] | torch.Tensor]:
    """Successive chunks of `items` (a list or a tensor along dim 0)."""
    for piece in chunks(len(items), batch_size):
        yield items[piece]


def n_batches(n: int, batch_size: int) -> int:
    return (n + batch_size - 1) // batch_size
