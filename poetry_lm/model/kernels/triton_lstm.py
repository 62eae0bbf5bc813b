r"""One LSTM step's elementwise work as one Triton kernel, forward and backward, and CUDA graphs
of the whole time loop: the GPU path of ``model/fused.py``.

On a GPU the torch-kernel loop is launch-bound: ~23 small kernels per step at ~20 µs of
dispatch each (``docs/performance.md``). Here each step is one GEMM (cuBLAS) and one Triton
kernel, and ``run_graphed`` captures the whole loop of T steps in a CUDA graph once per shape
(T, B, H) and replays it: one launch for the loop instead of 2T.

The kernels compute exactly ``model/fused.py``'s arithmetic (same notation; k = keep[t], 1
without a mask), and have the same calling convention as ``cpu_step.py``'s C kernels. ``tanh`` is
written 2σ(2x) − 1 (Triton has no portable tanh). On CPU tensors they run under Triton's
interpreter, which is how the tests check them against the hand-written BPTT without a GPU. σ is
written out as 1 / (1 + exp(−x)): the interpreter runs only Triton's builtins, not its library of
jit functions.

Triton is an optional dependency (``pip install -e ".[gpu]"``); without it ``available()`` is
False and the GPU runs the torch kernels. ``POETRY_LM_CUDA_GRAPHS=0`` turns the graphs off.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

import torch

_kernels: dict = {}  # "cuda"/"cpu" → {"forward", "backward"}, built on first use


def available() -> bool:
    """Whether Triton is installed (without importing it: that takes ~0.4 s, which the model's
    users who never run these kernels, such as poem generation, should not pay)."""
    return importlib.util.find_spec("triton") is not None


def kernels(device_type: str) -> dict:
    """The two kernels, compiled for CUDA tensors or interpreted (numpy, on the CPU) for CPU
    tensors; Triton is imported here, on first use."""
    if not _kernels:
        _kernels.update(_build())
    return _kernels["cuda" if device_type == "cuda" else "cpu"]


def _build() -> dict:
    """Both kernels, for CUDA (compiled by ``triton.jit``) and for the CPU (interpreted)."""
    import triton
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    forward, backward = _forward_kernel(tl), _backward_kernel(tl)
    return {
        "cuda": {"forward": triton.jit(forward), "backward": triton.jit(backward)},
        "cpu": {"forward": InterpretedFunction(forward), "backward": InterpretedFunction(backward)},
    }


def _forward_kernel(tl):
    """The forward step's kernel source, a Python function for Triton to compile; tl is
    ``triton.language``, passed in so that Triton is imported only on first use."""

    def _forward_step(
        gates,  # (B, 4H) in: x W_ihᵀ + b; out: i f g o
        rec,  # h W_hhᵀ, element (b, j) at b·rec_rs + j·rec_cs
        rec_rs,
        rec_cs,
        c_prev,  # (B, H)
        keep,  # (B,) when HAS_KEEP
        c_new,  # (B, H) out: k c'
        h_new,  # (B, H) out: k h'
        tanh_c,  # (B, H) out: tanh(c')
        H,
        HAS_KEEP: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        b = tl.program_id(0)  # one batch row
        j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)  # BLOCK hidden units of it
        m = j < H
        a = gates + b * 4 * H + j
        r = rec + b * rec_rs + j * rec_cs
        ai = tl.load(a, mask=m) + tl.load(r, mask=m)
        af = tl.load(a + H, mask=m) + tl.load(r + H * rec_cs, mask=m)
        ag = tl.load(a + 2 * H, mask=m) + tl.load(r + 2 * H * rec_cs, mask=m)
        ao = tl.load(a + 3 * H, mask=m) + tl.load(r + 3 * H * rec_cs, mask=m)
        i = 1 / (1 + tl.exp(-ai))  # σ
        f = 1 / (1 + tl.exp(-af))
        g = 2 / (1 + tl.exp(-2 * ag)) - 1  # tanh = 2σ(2x) − 1
        o = 1 / (1 + tl.exp(-ao))
        tl.store(a, i, mask=m)
        tl.store(a + H, f, mask=m)
        tl.store(a + 2 * H, g, mask=m)
        tl.store(a + 3 * H, o, mask=m)
        c = f * tl.load(c_prev + b * H + j, mask=m) + i * g  # c'
        t = 2 / (1 + tl.exp(-2 * c)) - 1  # tanh(c')
        h = o * t  # h'
        if HAS_KEEP:
            k = tl.load(keep + b)
            c = k * c
            h = k * h
        tl.store(tanh_c + b * H + j, t, mask=m)
        tl.store(c_new + b * H + j, c, mask=m)
        tl.store(h_new + b * H + j, h, mask=m)

    return _forward_step


def _backward_kernel(tl):
    """The backward step's kernel source, as ``_forward_kernel``."""

    def _backward_step(
        gates,  # (B, 4H) activations i f g o
        da,  # (B, 4H) out: their gradients (may be gates: each element is read first)
        tanh_c,  # (B, H)
        c_prev,  # (B, H)
        dout,  # (B, H)
        dh_rec,  # gradient from step t+1, element (b, j) at b·dh_rs + j·dh_cs
        dh_rs,
        dh_cs,
        dc,  # (B, H) in: dc_t; out: dc_{t−1}
        keep,  # (B,) when HAS_KEEP
        H,
        HAS_KEEP: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        b = tl.program_id(0)
        j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        m = j < H
        a = gates + b * 4 * H + j
        i = tl.load(a, mask=m)
        f = tl.load(a + H, mask=m)
        g = tl.load(a + 2 * H, mask=m)
        o = tl.load(a + 3 * H, mask=m)
        t = tl.load(tanh_c + b * H + j, mask=m)
        dh = tl.load(dout + b * H + j, mask=m) + tl.load(dh_rec + b * dh_rs + j * dh_cs, mask=m)
        dct = tl.load(dc + b * H + j, mask=m)
        if HAS_KEEP:
            k = tl.load(keep + b)
            dh = k * dh  # dh'
            dct = k * dct
        dcc = dct + dh * o * (1 - t * t)  # dc'
        d = da + b * 4 * H + j
        tl.store(d, dcc * g * i * (1 - i), mask=m)
        tl.store(d + H, dcc * tl.load(c_prev + b * H + j, mask=m) * f * (1 - f), mask=m)
        tl.store(d + 2 * H, dcc * i * (1 - g * g), mask=m)
        tl.store(d + 3 * H, dh * t * o * (1 - o), mask=m)
        tl.store(dc + b * H + j, dcc * f, mask=m)

    return _backward_step


def _launch(name: str, like: torch.Tensor, B: int, H: int, keep, *args) -> None:
    """One kernel over a grid of (batch row, block of hidden units)."""
    kernel = kernels(like.device.type)[name]
    block = min(1 << (H - 1).bit_length(), 256 if like.is_cuda else 32)  # a power of 2 ≥ H
    grid = (B, -(-H // block))
    has_keep = keep is not None
    args = [like if a is None else a for a in args]  # a placeholder pointer where keep is None
    kernel[grid](*args, H, HAS_KEEP=has_keep, BLOCK=block)


def forward_step(gates, rec, c_prev, keep, c_new, h_new, tanh_c) -> None:
    """gates (B, 4H) ← the activations of gates + rec; c_new, h_new, tanh_c (B, H) written;
    keep (B, 1) or None. rec may have any strides; the rest are contiguous, on one device."""
    B, H4 = gates.shape
    _launch("forward", gates, B, H4 // 4, keep, gates, rec, *rec.stride(), c_prev, keep, c_new,
            h_new, tanh_c)  # fmt: skip


def backward_step(gates, da, tanh_c, c_prev, dout, dh_rec, dc, keep, db=None) -> None:
    """da (B, 4H) ← the gate gradients (da may be gates); dc (B, H): dc_t in, dc_{t−1} out.
    db (4H,) or None: += da summed over rows (a torch sum: the GPU sums all steps at once)."""
    B, H4 = gates.shape
    _launch("backward", gates, B, H4 // 4, keep, gates, da, tanh_c, c_prev, dout, dh_rec,
            *dh_rec.stride(), dc, keep)  # fmt: skip
    if db is not None:
        db += da.sum(0)


# ---------------------------------------------------------------------------------------------
# CUDA graphs of the time loop


def graphs_enabled(x: torch.Tensor) -> bool:
    """CUDA graphs for the loop: on CUDA tensors unless ``POETRY_LM_CUDA_GRAPHS=0``."""
    return x.is_cuda and os.environ.get("POETRY_LM_CUDA_GRAPHS", "1") != "0"


_graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, dict[str, torch.Tensor]]] = {}


def run_graphed(
    name: str, loop: Callable[..., None], tensors: dict[str, torch.Tensor | None]
) -> dict[str, torch.Tensor]:
    """Run ``loop(**tensors)`` through a CUDA graph captured once per name, shapes and dtypes.

    The graph reads and writes fixed addresses, so each call copies ``tensors`` into the graph's
    own static copies, replays, and returns those static tensors: the caller must clone what it
    keeps beyond the next replay of the same graph (another layer of the same shape replays it).
    None values are passed through as None (and are part of the key)."""
    key = (
        name,
        *((k, None if v is None else (v.shape, v.dtype, v.device)) for k, v in tensors.items()),
    )
    if key not in _graphs:
        # contiguous copies: the kernels take contiguous rows (copy_ below converts any layout)
        static = {
            k: None if v is None else v.clone(memory_format=torch.contiguous_format)
            for k, v in tensors.items()
        }
        side = torch.cuda.Stream()  # warm up (Triton compiles, cuBLAS picks kernels) off-graph
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            loop(**static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads' CUDA calls during the capture (DDP's gradient hooks,
        # a data loader) are no error; only this thread's stream is captured
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            loop(**static)
        _graphs[key] = graph, static
    graph, static = _graphs[key]
    for k, v in tensors.items():
        if v is not None:
            static[k].copy_(v)
    graph.replay()
    return static
