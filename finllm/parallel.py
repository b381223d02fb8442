"""Run a GIL-free kernel over index ranges on a few threads.

Both the factor evaluator's numba kernels and the fraud side's sparse products take a half-open range
``lo, hi`` (stocks, days or graph rows) and write only that part of their output, so the work splits
into ``torch.get_num_threads()`` disjoint ranges, one per thread, with bit-identical results for any
thread count. Plain Python threads are used rather than numba's ``parallel=True``: numba's GNU OpenMP
layer kills a process that forks after using it (Airflow and multiprocessing fork), while this pool is
simply dropped in a forked child and rebuilt on first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

MIN_SPAN = 32  # items per thread below which a split is not worth the hand-off
ALIGN = 16  # items: a 64-byte cache line of float32

_POOL: ThreadPoolExecutor | None = None


def _after_fork() -> None:  # a forked child has none of the parent's threads and must not wait on them
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_after_fork)


def run_ranges(kernel: Callable, n: int, *args, parallel: bool = True, min_span: int = MIN_SPAN) -> None:
    """Call ``kernel(*args, lo, hi)`` so that the ranges cover ``[0, n)``; with ``parallel``, split into
    up to ``torch.get_num_threads()`` ranges of at least ``min_span`` items, run on threads (the kernel
    must release the GIL, e.g. ``@numba.njit(nogil=True)``, and write only its own range)."""
    k = min(torch.get_num_threads(), max(1, n // min_span)) if parallel else 1
    if k <= 1:
        kernel(*args, 0, n)
        return
    global _POOL
    if _POOL is None or _POOL._max_workers < k - 1:  # type: ignore[attr-defined]
        _POOL = ThreadPoolExecutor(max_workers=k - 1, thread_name_prefix="finllm-kernel")
    # inner cuts on multiples of ALIGN items: two threads writing the two halves of one cache line of
    # every row (false sharing) made a 2-thread Corr 25% slower
    cuts = [0, *((n * i // k + ALIGN // 2) // ALIGN * ALIGN for i in range(1, k)), n]
    futs = [_POOL.submit(kernel, *args, cuts[i], cuts[i + 1]) for i in range(1, k)]
    kernel(*args, cuts[0], cuts[1])
    for f in futs:
        f.result()
