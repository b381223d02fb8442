"""Fused element-wise evaluation: a tree of element-wise operators runs as one kernel pass.

Run one at a time, ``Div(Sub(Mul($close, 2), Add($high, $low)), $open)`` costs four passes over (D, S)
memory and three temporary (D, S) arrays; element-wise kernels are memory-bound, so that is most of their
time. Here the tree becomes a small program (:func:`factors.kernels.program`) that runs row by row: the
intermediates live in one-row buffers that stay in L1, and only the tree's inputs and its result cross
memory. On the full US panel, one thread: KSFT above about 2.9 ms instead of 4.3-6.2, and the warm pass
of ``bench/bench_eval.py`` (26 expressions whose window parts are cached) 40 ms instead of 59. Values
are the same, bit for bit, as running the operators one by one: each instruction computes and rounds
exactly as its own kernel.

An operator takes part when its registration gives its kernel code (``@op(..., fuse=K.ADD)``). The
inputs of the tree are its features and its other subtrees (windows, cross-sections, ``Log``), evaluated
(and cached) by the evaluator as usual. ``Ref``/``Delta`` of an input also take part, as a read of the
input d rows back: ``Div(Ref($close, 5), $close)`` then needs no (D, S) array for ``Ref($close, 5)``,
neither fresh memory in a cold pass nor a place in the cache. A tree with a single element-wise
operator, or with more than :data:`factors.kernels.P_INPUTS` distinct inputs, is not fused (the
evaluator then runs its operators one by one, and their subtrees may fuse on their own).

Epilogues: when one input of the tree is a window operator that has to be computed (not in the cache),
the program runs inside that window's kernel, on each block of :data:`factors.kernels.EPI_ROWS` rows the
kernel has just written (:class:`factors.ops.Epilogue`). ``Div(Mean($close, 10), $close)`` then costs
one kernel pass on all the kernel threads instead of a window pass plus a single-threaded element-wise
pass that reads the window's result back from memory; a single operator is worth it here. The window's
own result is still written (and cached). The program may read that result only at the row it computes:
a tree that also reads it shifted (``Ref(Mean($close, 5), 2)``) gets no epilogue, because the rows before
a thread's range are written by another thread. On the full US panel (2 threads) this took the cold pass
of ``bench/bench_eval.py`` from 210 to 200 ms (medians of 6 interleaved runs; MA10 7.5 -> 5.7 ms, STD60
7.9 -> 6.4 ms).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from factors import kernels as K
from factors.expr import Node
from factors.ops import FLIP, OPS, Epilogue, as_f32


def fusable(node: Node) -> bool:
    """Whether ``node`` can run inside a fused program: an element-wise operator, or ``Ref``/``Delta`` of
    an input (a shifted read of an array the program is given; a shift of a fused result is not)."""
    if node.kind != "op":
        return False
    spec = OPS[node.token]
    if spec.fuse is None:
        return False
    return spec.category != "ts" or not fusable(node.children[0])


def compile_tree(node: Node) -> tuple[list[Node], np.ndarray, np.ndarray]:
    """(input nodes, program (n, 4) int64, constants float64) for the element-wise tree at ``node``.

    Identical subtrees are computed once (instructions and inputs are keyed by canonical hash); the last
    instruction is ``node`` itself."""
    slots: dict[str, int] = {}
    leaves: list[Node] = []
    prog: list[tuple[int, int, int, int]] = []
    consts: list[float] = []
    done: dict[str, int] = {}

    def operand(n: Node) -> int:
        if not fusable(n):
            key = n.token if n.kind == "feature" else n.key
            if key not in slots:
                slots[key] = len(leaves)
                leaves.append(n)
            return slots[key]
        key = n.key
        if key in done:
            return done[key]
        spec = OPS[n.token]
        code = spec.fuse
        if spec.category == "ts":  # Ref / Delta of an input: a shifted read (then x - that, for Delta)
            x, w = n.children
            a = operand(x)
            prog.append((K.P_SHIFT, 0, a, int(w.value)))
            ins = (K.P_AA, K.SUB, a, K.P_INPUTS + len(prog) - 1) if code == K.DELTA else None
        elif len(n.children) == 1:
            ins = (K.P_UNARY, code, operand(n.children[0]), 0)
        else:
            a, b = n.children
            if b.kind == "const":
                ins = (K.P_AC, code, operand(a), len(consts))
                consts.append(float(b.value))
            elif a.kind == "const":  # c op x  ->  x op' c
                ins = (K.P_AC, FLIP.get(code, code), operand(b), len(consts))
                consts.append(float(a.value))
            else:
                ins = (K.P_AA, code, operand(a), operand(b))
        if ins is not None:
            prog.append(ins)
        done[key] = K.P_INPUTS + len(prog) - 1
        return done[key]

    operand(node)
    return leaves, np.asarray(prog, dtype=np.int64), np.asarray(consts or [0.0], dtype=np.float64)


def _host(leaves: list[Node], prog: np.ndarray) -> int | None:
    """The input to compute with the program as its epilogue: the last window-operator input that the
    program does not read shifted (an epilogue reads its host's output at row t only)."""
    shifted = {int(ins[2]) for ins in prog if ins[0] == K.P_SHIFT}
    hosts = [i for i, n in enumerate(leaves)
             if n.kind == "op" and OPS[n.token].category in ("ts", "ts_pair") and i not in shifted]
    return hosts[-1] if hosts else None


def run(node: Node, leaf: Callable[..., Tensor], valid: Tensor) -> Tensor | None:
    """Evaluate the element-wise tree at ``node`` in one pass; ``leaf(n, epi=None)`` evaluates its inputs
    (D, S) (the evaluator's ``_eval``); ``valid`` (D, S) bool is the panel's mask (for the shifts).

    Returns a fresh (D, S) float32 tensor, or None when the tree is not worth fusing or does not fit
    (see the module docstring); nothing has been evaluated then. A ``Ref``/``Delta`` at the root is not
    fused: as a window operator's result it is cached by the evaluator."""
    if not fusable(node) or OPS[node.token].category == "ts":
        return None
    leaves, prog, consts = compile_tree(node)
    host = _host(leaves, prog)
    if (len(prog) < 2 and host is None) or len(leaves) > K.P_INPUTS:
        return None
    arrs = [None if i == host else as_f32(leaf(n)) for i, n in enumerate(leaves)]
    out = K.empty(tuple(valid.shape))
    if host is not None:
        epi = Epilogue(arrs, host, prog, consts, out)
        x = leaf(leaves[host], epi)
        if epi.done:  # the window kernel ran the program on each row it wrote
            return torch.from_numpy(out)
        arrs[host] = as_f32(x)  # its result was cached already
    ins = tuple(arrs + [K.PAD] * (K.P_INPUTS - len(arrs)))
    K.run(K.program, out.shape[0], ins, valid.numpy(), prog, consts, out, parallel=False)
    return torch.from_numpy(out)
