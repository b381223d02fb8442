"""Output memory for the kernels (recycled anonymous mappings, see :func:`empty`) and :func:`run`, which
splits a kernel's rows over threads."""

from __future__ import annotations

import ctypes
import mmap
import os
import threading
import weakref
from collections.abc import Callable

import numpy as np
import torch

from finllm.parallel import MIN_SPAN, run_ranges

_BIG = 1 << 20  # arrays from this size on get their own mapping (and are recycled)
_FREE_MAX = 256 << 20  # bytes of released buffers kept for reuse
_free: dict[int, list[mmap.mmap]] = {}
_free_bytes = 0
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux: map all pages in one call (~20% cheaper than faulting each)
_lock = threading.Lock()
_PAGE = mmap.PAGESIZE
_MADV_POPULATE_WRITE = 23  # Linux >= 5.14: fault in (write) a range of a mapping in one call


def _load_madvise() -> Callable | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError):  # not a libc platform
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_madvise = _load_madvise() if _POPULATE else None


def _populate(addr: int, lo: int, hi: int) -> None:
    """Fault in pages lo..hi of the mapping at ``addr`` (ctypes releases the GIL: threads run this in
    parallel)."""
    if _madvise(addr + lo * _PAGE, (hi - lo) * _PAGE, _MADV_POPULATE_WRITE) != 0:
        raise OSError(ctypes.get_errno(), "madvise(MADV_POPULATE_WRITE)")


def _fresh(n: int) -> mmap.mmap:
    """A new anonymous mapping of ``n`` bytes, every page already faulted in: split over the kernel
    threads where the OS can populate a range (on the 2-vCPU VM this was tuned on, 2.3-2.8 ms per 11 MB
    on two threads against 3.2-4.4 ms on one), else with ``MAP_POPULATE`` in one call."""
    global _madvise
    threads = torch.get_num_threads() if _madvise is not None else 1
    if threads <= 1 or n < 2 * _BIG:
        return mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _POPULATE)
    m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    addr = np.frombuffer(m, dtype=np.uint8).ctypes.data
    try:
        run_ranges(_populate, (n + _PAGE - 1) // _PAGE, addr, min_span=_BIG // _PAGE)
    except OSError:  # kernel older than 5.14 (EINVAL): fault the pages on first touch, and stop trying
        _madvise = None
    return m


def _release(m: mmap.mmap, n: int) -> None:
    """Called when an array from :func:`empty` dies: keep its mapping for the next array of that size."""
    global _free_bytes
    with _lock:
        if _free_bytes + n <= _FREE_MAX:
            _free.setdefault(n, []).append(m)
            _free_bytes += n


def empty(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """An uninitialised array for a kernel's output (the memory behind the evaluator's tensors).

    A fresh (D, S) result is written once, so the first-touch page faults of fresh memory cost more than
    a cheap operator's arithmetic (about 5 ms of kernel time per 11 MB on the shared VM this was tuned
    on). Large arrays therefore get their own anonymous mapping, and when the array dies the mapping is
    kept (up to 256 MiB) and reused by the next array of the same size: already-mapped memory, no faults.
    A new mapping is faulted in before use, on the kernel threads (:func:`_fresh`).
    Transparent huge pages are not requested: where the kernel has to compact memory to provide them,
    a fault costs several times more than with 4 KiB pages."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape)) * dt.itemsize
    if n < _BIG:
        return np.empty(shape, dtype=dt)
    global _free_bytes
    with _lock:
        lst = _free.get(n)
        m = lst.pop() if lst else None
        if m is not None:
            _free_bytes -= n
    if m is None:
        m = _fresh(n)
    arr = np.frombuffer(m, dtype=dt).reshape(shape)
    weakref.finalize(arr, _release, m, n).atexit = False
    return arr


def _after_fork() -> None:  # a forked child must not use the parent's lock or its recycled mappings
    global _lock, _free, _free_bytes
    _lock, _free, _free_bytes = threading.Lock(), {}, 0


os.register_at_fork(after_in_child=_after_fork)


def run(kernel: Callable, n: int, *args, parallel: bool = True, min_span: int = MIN_SPAN) -> None:
    """``kernel(*args, lo, hi)`` over ``[0, n)`` split across ``torch.get_num_threads()`` threads, at least
    ``min_span`` items each (:func:`finllm.parallel.run_ranges`). Memory-bound element-wise kernels pass
    ``parallel=False``: a second thread buys little there and costs a hand-off on a busy machine."""
    run_ranges(kernel, n, *args, parallel=parallel, min_span=min_span)
