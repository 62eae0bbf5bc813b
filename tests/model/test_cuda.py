"""The CUDA path: the fused op against cuDNN's LSTM, its compiled Triton kernels and CUDA graphs
against its torch kernels, and training with and without bfloat16 on a GPU.

Skipped where torch sees no GPU (CI has none); run them on a machine that has one.
"""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_TRAIN
from test_fused import PARAMS, TOL, fused_layer, touch_everything
from test_kernels import TOL32, assert_all_close, inputs, run

from poetry_lm.cli.train import train_command
from poetry_lm.model.kernels import choice, triton_lstm
from poetry_lm.model.lm import LSTMLayer, RecurrentLayer
from poetry_lm.request import PoemRequest
from poetry_lm.writing.writer import Writer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")


def test_fused_op_on_the_gpu_matches_cudnn():
    """float64 on both sides, so the tolerance is as tight as on the CPU."""
    torch.manual_seed(0)
    T, B, I, H = 12, 5, 7, 9
    ref = torch.nn.LSTM(I, H).double().cuda()
    params = [getattr(ref, f"{p}_l0").detach().clone().requires_grad_(True) for p in PARAMS]
    x, h0, c0 = (
        torch.randn(*shape, dtype=torch.double, device="cuda", requires_grad=True)
        for shape in ((T, B, I), (B, H), (B, H))
    )
    out, h, c = fused_layer(x, h0, c0, params)
    ref_out, (ref_h, ref_c) = ref(x, (h0[None], c0[None]))
    for got, want in ((out, ref_out), (h, ref_h[0]), (c, ref_c[0])):
        assert got.is_cuda
        torch.testing.assert_close(got, want, **TOL)
    w = torch.randn_like(out)
    grads = torch.autograd.grad(touch_everything(out, h, c, w), [x, h0, c0, *params])
    ref_grads = torch.autograd.grad(
        touch_everything(ref_out, ref_h[0], ref_c[0], w),
        [x, h0, c0, *[getattr(ref, f"{p}_l0") for p in PARAMS]],
    )
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, **TOL)


def test_masked_fused_op_on_the_gpu_matches_the_loop():
    torch.manual_seed(1)
    T, B, I, H = 8, 4, 5, 6
    layer = LSTMLayer(I, H).double().cuda()
    x = torch.randn(T, B, I, dtype=torch.double, device="cuda", requires_grad=True)
    keep = (torch.rand(T, B, 1, device="cuda") > 0.3).double()
    zeros = torch.zeros(B, H, dtype=torch.double, device="cuda")
    out, (h, c) = layer(x, (zeros, zeros), keep)
    ref_out, (ref_h, ref_c) = RecurrentLayer.forward(layer, x, (zeros, zeros), keep)
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(c, ref_c, **TOL)
    (g,) = torch.autograd.grad(out.sum() + h.sum(), [x])
    (g_ref,) = torch.autograd.grad(ref_out.sum() + ref_h.sum(), [x])
    torch.testing.assert_close(g, g_ref, **TOL)


def history(out: Path) -> list[dict]:
    return json.loads((out / "metrics.json").read_text())["history"]


def test_training_on_the_gpu_matches_the_cpu_and_bf16_stays_close(tmp_path, tiny_run):
    """The same tiny run on the CPU (the ``tiny_run`` fixture), on the GPU in float32 and on the
    GPU under bfloat16 autocast; the GPU's checkpoint loads on the CPU and writes a poem there."""
    runs = {}
    for name, extra in (("float32", []), ("bf16", ["--bf16"])):
        result = CliRunner().invoke(
            train_command, ["--out", str(tmp_path / name), *TINY_TRAIN, "--device", "cuda", *extra]
        )
        assert result.exit_code == 0, result.output
        assert "on cuda" in result.output
        runs[name] = history(tmp_path / name)
    cpu = history(tiny_run)
    for a, b in zip(cpu, runs["float32"]):  # float32 on two devices: only summation order differs
        assert b["val_ppl"] == pytest.approx(a["val_ppl"], rel=1e-3)
    for a, b in zip(runs["float32"], runs["bf16"]):  # bfloat16 matmuls: 8 bits of mantissa
        assert b["val_ppl"] == pytest.approx(a["val_ppl"], rel=0.05)
    writer = Writer(tmp_path / "bf16" / "best.pt")
    assert next(writer.model.parameters()).device.type == "cpu"
    (poem,) = writer.write(PoemRequest.of(starts=["月"], max_len=20, rhyme=False, seed=0))
    assert poem.text.startswith("月") and len(poem.text) > 1


needs_triton = pytest.mark.skipif(not triton_lstm.available(), reason="Triton is not installed")


@needs_triton
@pytest.mark.parametrize("graphs", ["1", "0"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, TOL), (torch.float32, TOL32)])
def test_compiled_triton_path_matches_the_torch_kernels(graphs, masked, dtype, tol, monkeypatch):
    """The compiled Triton kernels, with and without CUDA graphs of the loop, against the torch
    kernels (the hand-written BPTT) on the GPU: outputs and every gradient."""
    monkeypatch.setenv("POETRY_LM_CUDA_GRAPHS", graphs)
    ts, keep = inputs(7, 5, 3, 9, dtype, masked, seed=4)
    ts = [t.detach().cuda().requires_grad_(True) for t in ts]
    keep = None if keep is None else keep.cuda()
    want = run("torch", ts, keep, monkeypatch)
    assert choice.paths(ts[0], 9, keep) == dict(
        recurrent="plain", linear="plain", weight="plain", step="torch", graphs="no"
    )
    monkeypatch.setenv("POETRY_LM_STEP", "")
    assert choice.paths(ts[0], 9, keep)["step"] == "Triton"
    assert choice.paths(ts[0], 9, keep)["graphs"] == ("yes" if graphs == "1" else "no")
    for _ in range(2):  # the second call replays the captured graphs
        assert_all_close(run("", ts, keep, monkeypatch), want, tol)


@needs_triton
def test_graph_buffers_are_not_shared_between_calls(monkeypatch):
    """Two forwards of the same shape before either backward (two stacked layers of equal
    width): each keeps its own saved tensors, so both gradients are right."""
    monkeypatch.setenv("POETRY_LM_CUDA_GRAPHS", "1")
    torch.manual_seed(0)
    layers = [LSTMLayer(6, 6).cuda() for _ in range(2)]
    x = torch.randn(5, 3, 6, device="cuda", requires_grad=True)
    zeros = torch.zeros(3, 6, device="cuda")

    def two_layers(forward):
        h = x
        for layer in layers:
            h = forward(layer, h, (zeros, zeros))[0]
        return torch.autograd.grad(h.square().sum(), [x, *layers[0].parameters()])

    got = two_layers(lambda layer, h, s: layer(h, s))
    want = two_layers(lambda layer, h, s: RecurrentLayer.forward(layer, h, s))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL32)
