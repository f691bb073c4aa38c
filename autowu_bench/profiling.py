"""Count the device operations (kernels on a GPU) that a piece of code dispatches, views excluded.

On a GPU each such operation is a kernel launch with a fixed host cost, which is what bounds small
batches; counting them on the CPU checks that cost without a GPU.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class _Counter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += not func.is_view
        self.reads += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


def count_kernels(fn: Callable[[], object]) -> int:
    """The non-view ATen operations ``fn()`` dispatches (autograd's backward ones included)."""
    with _Counter() as counter:
        fn()
    return counter.count


def count_host_reads(fn: Callable[[], object]) -> int:
    """Tensor values ``fn()`` reads back to Python (``.item()``, ``bool(t)``, ``if t:``): on a GPU each
    waits for every kernel queued before it."""
    with _Counter() as counter:
        fn()
    return counter.reads
