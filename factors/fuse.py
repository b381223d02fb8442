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
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from factors import kernels as K
from factors.expr import Node
from factors.ops import FLIP, OPS

_PAD = np.full((1, 1), np.nan, dtype=np.float32)  # fills the unused input slots (never read)


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


def run(node: Node, leaf: Callable[[Node], Tensor], valid: Tensor) -> Tensor | None:
    """Evaluate the element-wise tree at ``node`` in one pass; ``leaf`` evaluates its inputs (D, S);
    ``valid`` (D, S) bool is the panel's mask (for the shifts).

    Returns a fresh (D, S) float32 tensor, or None when the tree is not worth fusing or does not fit
    (see the module docstring); nothing has been evaluated then. A ``Ref``/``Delta`` at the root is not
    fused: as a window operator's result it is cached by the evaluator."""
    if not fusable(node) or OPS[node.token].category == "ts":
        return None
    leaves, prog, consts = compile_tree(node)
    if len(prog) < 2 or len(leaves) > K.P_INPUTS:
        return None
    arrs = []
    for n in leaves:
        x = leaf(n)
        if x.dtype != torch.float32:
            x = x.to(torch.float32)
        arrs.append(x.detach().contiguous().numpy())
    shape = arrs[0].shape
    out = K.empty(shape)
    ins = tuple(arrs + [_PAD] * (K.P_INPUTS - len(arrs)))
    K.run(K.program, shape[0], ins, valid.numpy(), prog, consts, out, parallel=False)
    return torch.from_numpy(out)
