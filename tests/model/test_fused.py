"""The fused LSTM sequence op against torch.nn.LSTM, LSTMLayer's masked loop and finite
differences."""

import copy

import pytest
import torch

from poetry_lm.model.fused import lstm_sequence
from poetry_lm.model.lm import LSTMLayer, RecurrentLayer

PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
TOL = dict(rtol=1e-10, atol=1e-12)


def fused_layer(x, h0, c0, params, keep=None):
    """x (T, B, I) → outputs, h_T, c_T of the fused op, with torch's four parameters."""
    w_ih, w_hh, b_ih, b_hh = params
    return lstm_sequence(x, h0, c0, w_ih, b_ih + b_hh, w_hh, keep)


def touch_everything(out, h, c, w):
    """A loss that reaches the outputs and both final states, so every path gets a gradient."""
    return (out * w).sum() + (h**2).sum() + (c * 0.5).sum()


@pytest.mark.parametrize(
    "T,B,I,H", [(7, 3, 5, 4), (1, 1, 3, 6), (1, 4, 2, 3), (9, 1, 4, 5), (16, 5, 8, 8)]
)
def test_matches_torch_lstm(T, B, I, H):
    torch.manual_seed(T * 100 + B * 10 + H)
    ref = torch.nn.LSTM(I, H).double()
    params = [getattr(ref, f"{p}_l0").detach().clone().requires_grad_(True) for p in PARAMS]
    x = torch.randn(T, B, I, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.double, requires_grad=True)
    c0 = torch.randn(B, H, dtype=torch.double, requires_grad=True)

    out, h, c = fused_layer(x, h0, c0, params)
    ref_out, (ref_h, ref_c) = ref(x, (h0[None], c0[None]))
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(h, ref_h[0], **TOL)
    torch.testing.assert_close(c, ref_c[0], **TOL)

    w = torch.randn_like(out)
    grads = torch.autograd.grad(touch_everything(out, h, c, w), [x, h0, c0, *params])
    ref_grads = torch.autograd.grad(
        touch_everything(ref_out, ref_h[0], ref_c[0], w),
        [x, h0, c0, *[getattr(ref, f"{p}_l0") for p in PARAMS]],
    )
    for name, g, r in zip(("x", "h0", "c0", *PARAMS), grads, ref_grads):
        torch.testing.assert_close(g, r, **TOL, msg=lambda m, name=name: f"d{name}: {m}")


@pytest.mark.parametrize("T,B,I,H", [(8, 4, 5, 6), (1, 1, 3, 4), (5, 3, 2, 3)])
def test_matches_the_masked_loop_of_lstm_layer(T, B, I, H):
    """keep has front padding (zeros at the start of some rows), a mid-sequence reset and an
    all-zero column; the fused op must reproduce LSTMLayer.forward's state resets exactly."""
    torch.manual_seed(7 + T + B)
    layer = LSTMLayer(I, H).double()
    keep = torch.ones(T, B, 1, dtype=torch.double)
    for b in range(B):
        keep[: (b * 2) % (T + 1), b] = 0  # front padding, of different lengths
    if T > 3 and B > 1:
        keep[T // 2, 1] = 0  # a reset inside a row
    if B > 2:
        keep[:, 2] = 0  # a row that is all padding
    x = torch.randn(T, B, I, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.double, requires_grad=True)
    c0 = torch.randn(B, H, dtype=torch.double, requires_grad=True)

    out, (h, c) = layer(x, (h0, c0), keep)  # the fused op
    # the step-by-step loop
    ref_out, (ref_h, ref_c) = RecurrentLayer.forward(layer, x, (h0, c0), keep)
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(h, ref_h, **TOL)
    torch.testing.assert_close(c, ref_c, **TOL)
    assert (out[keep.expand_as(out) == 0] == 0).all()

    w = torch.randn_like(out)
    wrt = [x, h0, c0, *[getattr(layer, p) for p in PARAMS]]
    grads = torch.autograd.grad(touch_everything(out, h, c, w), wrt)
    ref_grads = torch.autograd.grad(touch_everything(ref_out, ref_h, ref_c, w), wrt)
    for name, g, r in zip(("x", "h0", "c0", *PARAMS), grads, ref_grads):
        torch.testing.assert_close(g, r, **TOL, msg=lambda m, name=name: f"d{name}: {m}")


def test_bool_keep_and_float32():
    torch.manual_seed(3)
    layer = LSTMLayer(4, 5)
    x = torch.randn(6, 3, 4)
    keep = torch.rand(6, 3, 1) > 0.3
    zeros = torch.zeros(3, 5)
    out, (h, c) = layer(x, (zeros, zeros), keep)
    ref_out, (ref_h, ref_c) = RecurrentLayer.forward(layer, x, (zeros, zeros), keep.float())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(c, ref_c)


@pytest.mark.parametrize("masked", [False, True])
def test_gradcheck(masked):
    torch.manual_seed(11)
    T, B, I, H = 4, 2, 3, 3
    x = torch.randn(T, B, I, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.double, requires_grad=True)
    c0 = torch.randn(B, H, dtype=torch.double, requires_grad=True)
    w_ih = (torch.randn(4 * H, I, dtype=torch.double) * 0.5).requires_grad_(True)
    bias = torch.randn(4 * H, dtype=torch.double, requires_grad=True)
    w_hh = (torch.randn(4 * H, H, dtype=torch.double) * 0.5).requires_grad_(True)
    keep = (
        torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.double)[
            ..., None
        ]
        if masked
        else None
    )
    # gradcheck backpropagates each graph several times, so the saved gates must stay intact
    assert torch.autograd.gradcheck(
        lambda *a: lstm_sequence(*a, keep, retain_graph=True), (x, h0, c0, w_ih, bias, w_hh)
    )


@pytest.mark.parametrize("masked", [False, True])
def test_overwriting_the_saved_gates_gives_the_same_gradients_once(masked):
    """By default the backward writes the gate gradients over the saved gates: every gradient is
    the same as with a separate buffer, and a second backward through the graph is refused."""
    torch.manual_seed(3)
    T, B, I, H = 6, 3, 4, 5
    inputs = [
        torch.randn(T, B, I, dtype=torch.double),
        torch.randn(B, H, dtype=torch.double),
        torch.randn(B, H, dtype=torch.double),
        torch.randn(4 * H, I, dtype=torch.double),
        torch.randn(4 * H, dtype=torch.double),
        torch.randn(4 * H, H, dtype=torch.double),
    ]
    inputs = [t.requires_grad_(True) for t in inputs]
    keep = (torch.rand(T, B, 1) > 0.3).double() if masked else None
    w = torch.randn(T, B, H, dtype=torch.double)
    grads = {}
    for retain in (False, True):
        loss = touch_everything(*lstm_sequence(*inputs, keep, retain_graph=retain), w)
        grads[retain] = torch.autograd.grad(loss, inputs, retain_graph=True)
        if retain:
            again = torch.autograd.grad(loss, inputs)
            for a, b in zip(again, grads[retain]):
                torch.testing.assert_close(a, b, **TOL)
        else:
            with pytest.raises(RuntimeError, match="runs once per forward"):
                torch.autograd.grad(loss, inputs)
    for a, b in zip(grads[False], grads[True]):
        torch.testing.assert_close(a, b, **TOL)


def test_unused_outputs_and_frozen_inputs():
    """Only h_T used (dout and dc_T arrive as zeros); weights not requiring grad are skipped."""
    torch.manual_seed(5)
    T, B, I, H = 5, 2, 4, 3
    x = torch.randn(T, B, I, dtype=torch.double, requires_grad=True)
    h0 = torch.zeros(B, H, dtype=torch.double)
    w_ih, bias, w_hh = (
        torch.randn(4 * H, I, dtype=torch.double),
        torch.randn(4 * H, dtype=torch.double),
        torch.randn(4 * H, H, dtype=torch.double),
    )
    _, h, _ = lstm_sequence(x, h0, h0, w_ih, bias, w_hh)
    (g,) = torch.autograd.grad(h.sum(), [x])
    assert is_one_node(h) and g.shape == x.shape
    x_ref = x.detach().clone().requires_grad_(True)
    hr, cr = h0, h0
    for t in range(T):  # the LSTM step written out under autograd
        i, f, gg, o = (x_ref[t] @ w_ih.T + bias + hr @ w_hh.T).chunk(4, dim=1)
        cr = torch.sigmoid(f) * cr + torch.sigmoid(i) * torch.tanh(gg)
        hr = torch.sigmoid(o) * torch.tanh(cr)
    (g_ref,) = torch.autograd.grad(hr.sum(), [x_ref])
    torch.testing.assert_close(g, g_ref, **TOL)


def is_one_node(t):
    """The whole sequence is one autograd node (its name comes from the Function's class)."""
    return type(t.grad_fn).__name__ == "LSTMSequenceBackward"


def test_training_with_the_fused_op_follows_the_step_by_step_loop(monkeypatch):
    """30 Adam steps of a whole model, dropout and front padding included, give the same losses
    whether LSTMLayer runs the fused op or the generic autograd loop."""
    from poetry_lm.model.lm import ModelConfig, PoetryLM

    torch.manual_seed(0)
    start = PoetryLM(
        ModelConfig(
            vocab_size=300,
            embed_dim=32,
            hidden_dim=64,
            dropout=0.15,
            softmax="adaptive",
            cutoffs=[50, 150],
            couplet_input=False,
        )
    )
    tokens = torch.randint(4, 300, (33, 16))
    tokens[:5, :4] = 0  # front padding

    def losses() -> list[float]:
        model = copy.deepcopy(start)
        optimizer = torch.optim.Adam(model.parameters(), 2e-3)
        torch.manual_seed(1)  # the same dropout masks in both runs
        out = []
        for _ in range(30):
            nll, n, _ = model.sequence_nll(tokens, 0)
            optimizer.zero_grad()
            (nll / n).backward()
            optimizer.step()
            out.append(float(nll.detach()) / n)
        return out

    fused = losses()
    monkeypatch.setattr(LSTMLayer, "forward", RecurrentLayer.forward)
    loop = losses()
    assert fused[-1] < fused[0] - 1.0  # it learned
    assert fused == pytest.approx(loop, rel=1e-4)


def test_packed_recurrent_weight_gives_the_same_numbers():
    """float32 sequences of 32+ steps take the GEMMs chosen for this machine (MKL's packed
    weight among the candidates) and the C step kernel where it builds; they must agree with the
    step-by-step loop as closely as any float32 reordering of sums does."""
    from poetry_lm.model.kernels.gemm import PACK_FROM_STEPS

    torch.manual_seed(2)
    T, B, I, H = PACK_FROM_STEPS + 3, 3, 5, 8
    layer = LSTMLayer(I, H)
    x = torch.randn(T, B, I, requires_grad=True)
    keep = (torch.rand(T, B, 1) > 0.1).float()
    zeros = torch.zeros(B, H)
    out, (h, c) = layer(x, (zeros, zeros), keep)
    ref_out, (ref_h, ref_c) = RecurrentLayer.forward(layer, x, (zeros, zeros), keep)
    assert is_one_node(out)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(c, ref_c)
    w = torch.randn_like(out)
    wrt = [x, *[getattr(layer, p) for p in PARAMS]]
    grads = torch.autograd.grad((out * w).sum() + h.sum(), wrt)
    ref_grads = torch.autograd.grad((ref_out * w).sum() + ref_h.sum(), wrt)
    for name, g, r in zip(("x", *PARAMS), grads, ref_grads):
        torch.testing.assert_close(
            g, r, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"d{name}: {m}"
        )
