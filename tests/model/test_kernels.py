"""The fused op's step kernels against its torch-kernel path (the hand-written BPTT, the
specification): the Triton kernels under Triton's interpreter on CPU tensors, and the compiled C
kernel; outputs and every gradient, with and without the padding mask. Also the GEMM backends
and their cached choice."""

import json

import pytest
import torch
from test_fused import touch_everything

from poetry_lm.model.fused import lstm_sequence
from poetry_lm.model.kernels import choice, cpu_step, gemm, loops, triton_lstm

needs_triton = pytest.mark.skipif(not triton_lstm.available(), reason="Triton is not installed")
TOL32 = dict(rtol=1e-5, atol=1e-6)  # float32: a different order of operations, no more
TOL64 = dict(rtol=1e-10, atol=1e-12)


def inputs(T, B, I, H, dtype, masked, seed):
    """Random x, h0, c0, W_ih, b, W_hh (all requiring grad) and a keep mask with front padding,
    a mid-row reset and an all-padding row, or None."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(T, B, I), (B, H), (B, H), (4 * H, I), (4 * H,), (4 * H, H)]
    ts = [(torch.randn(*s, generator=g, dtype=dtype) * 0.7).requires_grad_(True) for s in shapes]
    keep = None
    if masked:
        keep = torch.ones(T, B, 1, dtype=dtype)
        keep[:2, 0] = 0  # front padding
        keep[T // 2, B - 1] = 0  # a reset inside a row
        if B > 2:
            keep[:, 1] = 0  # a row that is all padding
    return ts, keep


def run(step, ts, keep, monkeypatch, retain=False):
    """Outputs and the gradients of every input, with POETRY_LM_STEP=step."""
    monkeypatch.setenv("POETRY_LM_STEP", step)
    out, h, c = lstm_sequence(*ts, keep, retain_graph=retain)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(9), dtype=out.dtype)
    grads = torch.autograd.grad(touch_everything(out, h, c, w), ts)
    return [out.detach(), h.detach(), c.detach(), *grads]


NAMES = ("out", "h_T", "c_T", "dx", "dh0", "dc0", "dW_ih", "db", "dW_hh")


def assert_all_close(got, want, tol):
    for name, g, w in zip(NAMES, got, want):
        torch.testing.assert_close(g, w, **tol, msg=lambda m, name=name: f"{name}: {m}")


@needs_triton
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("T,B,I,H", [(5, 3, 7, 5), (3, 1, 2, 9)])
def test_triton_kernels_match_the_torch_path_in_float32(T, B, I, H, masked, monkeypatch):
    ts, keep = inputs(T, B, I, H, torch.float32, masked, seed=T + H)
    monkeypatch.setenv("POETRY_LM_GEMM", "plain")  # the same products on both sides
    want = run("torch", ts, keep, monkeypatch)
    monkeypatch.setenv("POETRY_LM_STEP", "triton")
    assert choice.paths(ts[0], H, keep)["step"] == "Triton"
    assert_all_close(run("triton", ts, keep, monkeypatch), want, TOL32)


@needs_triton
@pytest.mark.parametrize("masked", [False, True])
def test_triton_kernels_match_the_torch_path_in_float64(masked, monkeypatch):
    """In float64 the only difference left is tanh written as 2σ(2x) − 1: 1e-10 holds."""
    ts, keep = inputs(4, 3, 3, 6, torch.float64, masked, seed=5)
    want = run("torch", ts, keep, monkeypatch)
    got = run("triton", ts, keep, monkeypatch, retain=True)  # retain_graph: a separate da buffer
    assert_all_close(got, want, TOL64)


c_kernel = pytest.mark.skipif(cpu_step.load() is None, reason="no C compiler here")


@c_kernel
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("gemm_backend", ["plain", "onednn-t", "mkl"])
def test_c_kernel_matches_the_torch_path(masked, gemm_backend, monkeypatch):
    """onednn-t hands the kernel a transposed product (strides (1, B)); mkl needs 32+ steps."""
    if not gemm.available(gemm_backend.removesuffix("-t")):
        pytest.skip(f"this torch has no {gemm_backend}")
    ts, keep = inputs(gemm.PACK_FROM_STEPS + 1, 3, 5, 7, torch.float32, masked, seed=3)
    monkeypatch.setenv("POETRY_LM_GEMM", gemm_backend)
    want = run("torch", ts, keep, monkeypatch)
    monkeypatch.setenv("POETRY_LM_STEP", "c")
    assert choice.paths(ts[0], 7, keep)["step"] == "C kernel"
    assert choice.paths(ts[0], 7, keep)["recurrent"] == gemm_backend
    assert_all_close(run("c", ts, keep, monkeypatch), want, dict(rtol=1e-4, atol=1e-5))


def test_c_kernel_missing_compiler_falls_back_to_torch_kernels(monkeypatch, tmp_path):
    """With no compiler the op still runs (torch kernels) and says why."""
    monkeypatch.setattr(cpu_step, "_state", {})
    monkeypatch.setenv("POETRY_LM_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert cpu_step.load() is None
    assert cpu_step.status().startswith("torch kernels (the C kernel did not build")
    ts, keep = inputs(4, 2, 3, 4, torch.float32, True, seed=1)
    assert choice.paths(ts[0], 4, keep)["step"] == "torch"
    out, _, _ = lstm_sequence(*ts, keep)
    assert torch.isfinite(out).all()


def test_gemm_choice_is_measured_once_and_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("POETRY_LM_CACHE", str(tmp_path))
    monkeypatch.delenv("POETRY_LM_GEMM", raising=False)
    monkeypatch.setattr(gemm, "_chosen", {})
    calls = []
    real = gemm._measure_recurrent
    monkeypatch.setattr(
        gemm, "_measure_recurrent", lambda *a: calls.append(a) or real(*a), raising=True
    )
    first = gemm.choose("recurrent", 4, 3, 8, 40)
    assert first in gemm.BACKENDS and len(calls) == 1
    stored = json.loads((tmp_path / "gemm_choice.json").read_text())
    assert list(stored.values()) == [first] and "recurrent 4x8" in next(iter(stored))
    monkeypatch.setattr(gemm, "_chosen", {})  # a new process: read from the file
    assert gemm.choose("recurrent", 4, 3, 8, 40) == first and len(calls) == 1


def test_forced_gemm_backend_and_a_wrong_name(monkeypatch):
    monkeypatch.setenv("POETRY_LM_GEMM", "plain")
    assert gemm.choose("recurrent", 4, 3, 8, 40) == "plain"
    monkeypatch.setenv("POETRY_LM_GEMM", "blas")
    with pytest.raises(ValueError, match="POETRY_LM_GEMM must be one of"):
        gemm.choose("recurrent", 4, 3, 8, 40)


@pytest.mark.parametrize("backend", gemm.BACKENDS)
def test_every_gemm_backend_computes_the_same_products(backend):
    if not gemm.available(backend.removesuffix("-t")):
        pytest.skip(f"this torch has no {backend}")
    g = torch.Generator().manual_seed(0)
    w, m, x = (torch.randn(*s, generator=g) for s in ((12, 5), (3, 5), (7, 5)))
    d, b = torch.randn(7, 12, generator=g), torch.randn(12, generator=g)
    close = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gemm.recurrent_product(backend, w, 3)(m), m @ w.t(), **close)
    if backend in ("onednn", "plain"):
        linear, weight_grad = gemm.linear_product(backend), gemm.weight_product(backend)
        torch.testing.assert_close(linear(x, w), x @ w.t(), **close)
        torch.testing.assert_close(linear(x, w, b), x @ w.t() + b, **close)
        torch.testing.assert_close(weight_grad(d, x), d.t() @ x, **close)


@needs_triton
def test_the_loops_a_cuda_graph_captures_match_the_op(monkeypatch):
    """``graphed_forward`` and ``graphed_backward`` (what the GPU captures), run eagerly under
    the interpreter: the same states and gradients as the op's torch-kernel path."""
    T, B, I, H = 4, 3, 2, 5
    ts, keep = inputs(T, B, I, H, torch.float32, True, seed=8)
    x, h0, c0, w_ih, b, w_hh = (t.detach() for t in ts)
    want = run("torch", ts, keep, monkeypatch)
    gates = (x.reshape(T * B, I) @ w_ih.t() + b).view(T, B, 4 * H)
    hs, cs, tanh_c = torch.zeros(T + 1, B, H), torch.zeros(T + 1, B, H), torch.zeros(T, B, H)
    hs[0], cs[0] = h0, c0
    loops.graphed_forward(gates, hs, cs, tanh_c, keep, w_hh)
    torch.testing.assert_close(hs[1:], want[0], **TOL32)
    torch.testing.assert_close(cs[T], want[2], **TOL32)
    out, h, c = hs[1:].clone(), hs[T].clone(), cs[T].clone()
    # the gradients touch_everything sends back: w for out, 2h for h_T, 0.5 for c_T
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(9))
    dh, dc = 2 * h, torch.full_like(c, 0.5)
    loops.graphed_backward(gates, tanh_c, cs, dout, dh, dc, keep, w_hh)
    torch.testing.assert_close(dh, want[4], **TOL32)  # dh0
    torch.testing.assert_close(dc, want[5], **TOL32)  # dc0
    torch.testing.assert_close(gates.sum((0, 1)), want[7], **TOL32)  # db = Σ da


@needs_triton
@pytest.mark.parametrize("retain", [False, True])
def test_the_cuda_graph_branch_keeps_its_buffers_apart_with_an_eager_stand_in(retain, monkeypatch):
    """The op's CUDA-graph branch (copies in, the loop on the copies, outputs cloned out, the
    gradients read from the graph's gates) on the CPU: ``run_graphed`` replaced by an eager
    stand-in that keeps one set of static copies per name and shapes, as the graph does."""
    static_sets = {}

    def eager_run_graphed(name, loop, tensors):
        key = (name, *((k, None if v is None else v.shape) for k, v in tensors.items()))
        static = static_sets.setdefault(
            key, {k: None if v is None else v.clone() for k, v in tensors.items()}
        )
        for k, v in tensors.items():
            if v is not None:
                static[k].copy_(v)
        loop(**static)
        return static

    ts, keep = inputs(5, 3, 4, 6, torch.float32, True, seed=2)
    monkeypatch.setenv("POETRY_LM_GEMM", "plain")
    want = run("torch", ts, keep, monkeypatch, retain)
    monkeypatch.setattr(triton_lstm, "graphs_enabled", lambda x: True)
    monkeypatch.setattr(triton_lstm, "run_graphed", eager_run_graphed)
    monkeypatch.setenv("POETRY_LM_STEP", "triton")
    assert choice.paths(ts[0], 6, keep)["graphs"] == "yes"
    for _ in range(2):  # the second call reuses the static copies
        assert_all_close(run("triton", ts, keep, monkeypatch, retain), want, TOL32)
    assert len(static_sets) == 2  # one forward, one backward
