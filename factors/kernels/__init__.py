"""numba kernels behind :mod:`factors.ops`: every operator in one pass over day-major (D, S) float32 arrays.

Modules: :mod:`~factors.kernels.memory` (recycled output memory, :func:`run` over threads),
:mod:`~factors.kernels.codes` (the named codes kernels dispatch on), :mod:`~factors.kernels.elementwise`
(element-wise kernels, fused programs and the epilogue), :mod:`~factors.kernels.blocks` (every window
statistic that van Herk / Gil-Werman blocks compute, one skeleton), :mod:`~factors.kernels.direct`
(shifts, ``Med``, ``Rank``, ``Mad``) and :mod:`~factors.kernels.cross_section`.

Layout: the panel is (D, S), days x stocks, C-contiguous, so one day is a contiguous row. Time-series
kernels walk the days in order and keep per-stock state vectors; the inner loop runs over the stocks of
a day (contiguous, branch-free, so LLVM vectorises it). Every kernel takes a day range ``lo, hi`` and
writes only those rows of ``out``, so :func:`run` can hand disjoint ranges to threads (kernels release
the GIL). A time-series kernel starts a little before ``lo`` (at the block holding ``lo``, or ``w`` days
earlier for the direct kernels) so that its state on day ``lo`` is exactly the state of a run from
day 0: a value does not depend on how the days were split (bit for bit). Threads get whole rows: split by
stocks, each thread read half of every row, which made the cheap kernels slower on two threads than on one.

Every kernel writes its final output itself: NaN where the stock is not ``valid`` that day, where fewer
than ``minp`` values are present, or where the result is not finite (so no separate cleaning pass).

``Med`` keeps each stock's window sorted and updates it branch-free across stocks (O(w) per value,
vectorised). ``Rank`` and ``Mad`` sum over the w lags of the window directly (vectorised across stocks;
O(w) per value, exact, no running state). ``CSRank`` packs a truncated float order key and the column
into uint32 words, sorts rows with numpy's SIMD sort and finishes the order within the (short) runs of
equal truncated keys.

Vectorisation notes (numba/LLVM): inner loops index 1-D rows (``x[t]``) with the loop
variable, and load every array element *before* any conditional expression (a load inside a
conditional blocks LLVM's vectoriser); float reductions are not vectorised without reassociation, so
per-stock accumulators are arrays, not scalars. No ``fastmath`` in time-series kernels: results must not
depend on a stock's SIMD lane. Outputs come from :func:`empty` (recycled memory, see there).

Compiled code is cached on disk (``cache=True``): a later process loads it instead of compiling (after an
install, the first process compiles for about a minute on 2 cores, later ones load everything in ~1 s).
numba checks only the file that holds a cached kernel: the helpers that :mod:`~factors.kernels.blocks`
and :mod:`~factors.kernels.direct` inline from :mod:`~factors.kernels.elementwise` (``fin``, ``due``,
``flush``) are not tracked, so after editing those, delete ``factors/kernels/__pycache__``.

The names below are this package's interface; the codes are also exported under their old flat names
(``ADD``, ``REF``, ``P_SHIFT``, ...) as members of their enums.
"""

from factors.kernels.blocks import block_window
from factors.kernels.codes import Binary, Instr, Shift, Stat, Unary
from factors.kernels.cross_section import cs_keys, cs_rank_assign, cs_zscore
from factors.kernels.direct import roll_mad, roll_median, roll_rank, shift
from factors.kernels.elementwise import (EPI_ROWS, INF32, NAN32, NO_EPILOGUE, P_INPUTS, PAD, binary_aa, binary_ac,
                                         clean, copy, due, finite_inplace, flush, has_epilogue, program,
                                         unary)
from factors.kernels.memory import empty, run

ABS, FINITE, SIGN = Unary.ABS, Unary.FINITE, Unary.SIGN
ADD, SUB, MUL, DIV, GREATER, LESS, POW, RSUB, RDIV = Binary
REF, DELTA = Shift.REF, Shift.DELTA
P_UNARY, P_AA, P_AC, P_SHIFT = Instr

__all__ = ["ABS", "ADD", "DELTA", "DIV", "EPI_ROWS", "FINITE", "GREATER", "INF32", "LESS", "MUL", "NAN32",
           "NO_EPILOGUE", "PAD", "POW", "P_AA", "P_AC", "P_INPUTS", "P_SHIFT", "P_UNARY", "RDIV", "REF", "RSUB",
           "SIGN", "SUB", "Binary", "Instr", "Shift", "Stat", "Unary", "binary_aa", "binary_ac", "block_window",
           "clean", "copy", "cs_keys", "cs_rank_assign", "cs_zscore", "due", "empty", "finite_inplace", "flush",
           "has_epilogue",
           "program", "roll_mad", "roll_median", "roll_rank", "run", "shift", "unary"]
