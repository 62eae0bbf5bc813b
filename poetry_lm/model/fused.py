r"""A hand-fused LSTM layer: the input GEMM and the whole time loop as one autograd node.

``RecurrentLayer.forward`` in ``lm.py`` loops over steps under autograd, so every step records
about a dozen graph nodes and backward walks them one by one. ``LSTMSequence`` runs the same
computation with autograd off, in one (T, B, 4H) buffer that it fills with the input GEMM and
activates in place step by step (``torch_forward``); its hand-written backward computes the gate
gradients step by step (``torch_backward``) and then forms every weight gradient as ONE GEMM over
all steps (``input_and_weight_gradients``).

The backward writes each step's gate gradients over that step's saved gate activations, which it
has just read for the last time. A second (T, B, 4H) buffer would be fresh memory every call, and
the kernel maps fresh memory page by page on first touch: that cost ~4 ms of a 115 ms step at
H = 256. So by default the backward runs once per forward; ``retain_graph=True`` keeps the saved
activations intact for a graph that is backpropagated more than once (``gradcheck`` does that).

Notation as in ``docs/bptt.md`` and ``poetry_lm/learn/reference/cells.py``: rows are batch items,
gates in torch's order i, f, g, o, primes mark the state a step produces; h and c are the state
the step receives (h_{t−1}, c_{t−1}). With ``b = b_ih + b_hh``, step t computes

    a   = x_t W_ihᵀ + b + h W_hhᵀ                 [a_i | a_f | a_g | a_o], (B, 4H)
    i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
    c'  = f ⊙ c + i ⊙ g
    h'  = o ⊙ tanh(c')
    h_t = k_t ⊙ h',   c_t = k_t ⊙ c'              k = keep[t] (B, 1); k ≡ 1 without a mask

so a zero in ``keep`` resets the state, exactly as ``RecurrentLayer.forward`` does, and the
gradient through a masked step is multiplied by the same k_t. ``outputs[t] = h_t``.

Speed (``docs/performance.md``): the functions here are the specification, in torch's kernels.
``kernels/choice.py`` says how a call runs: the GEMMs go through the library that is fastest on
this machine and shape (``kernels/gemm.py``: MKL, oneDNN or plain torch, measured once and
cached), and each step's elementwise work is one call (``kernels/loops.py``): a compiled C loop
on a CPU (``kernels/cpu_step.py``), a Triton kernel on a GPU (``kernels/triton_lstm.py``), where
the whole time loop is also captured as a CUDA graph; the torch kernels below where neither can
be had. All paths compute the arithmetic written here, and the tests hold each to these.
"""

from __future__ import annotations

import torch

from poetry_lm.model.kernels import gemm, loops
from poetry_lm.model.kernels.choice import paths

# u ⊙ σ'(a) and u ⊙ tanh'(a) from y = σ(a) or tanh(a): one kernel each, into grad_input
sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
tanh_backward = torch.ops.aten.tanh_backward.grad_input


def torch_forward(h_times_w, gates, hs, cs, tanh_c, keep) -> None:
    """The time loop in torch's kernels. gates (T, B, 4H) holds x_t W_ihᵀ + b on entry and the
    activated gates i f g o on return; hs, cs (T+1, B, H) hold h0, c0 at [0] and get h_t, c_t at
    [t+1]; tanh_c (T, B, H) gets tanh(c') for the backward; h_times_w: h ↦ h W_hhᵀ (B, 4H)."""
    H = hs.shape[2]
    for t in range(gates.shape[0]):
        a = gates[t]  # (B, 4H) view into the buffer
        a += h_times_w(hs[t])  # a = (x_t W_ihᵀ + b) + h W_hhᵀ
        a[:, : 2 * H].sigmoid_()  # i = σ(a_i), f = σ(a_f)
        a[:, 2 * H : 3 * H].tanh_()  # g = tanh(a_g)
        a[:, 3 * H :].sigmoid_()  # o = σ(a_o)
        i, f, g, o = a.split(H, dim=1)  # (B, H) views each
        c_new, h_new = cs[t + 1], hs[t + 1]  # (B, H) views into the buffers
        torch.mul(f, cs[t], out=c_new)  # c' = f ⊙ c ...
        c_new.addcmul_(i, g)  #      ... + i ⊙ g
        torch.tanh(c_new, out=tanh_c[t])  # tanh(c'), kept for backward
        torch.mul(o, tanh_c[t], out=h_new)  # h' = o ⊙ tanh(c')
        if keep is not None:
            c_new.mul_(keep[t])  # c_t = k_t ⊙ c'   (reset at padding)
            h_new.mul_(keep[t])  # h_t = k_t ⊙ h'


def torch_backward(dh_times_w, gates, da, tanh_c, cs, dout, dh_rec, dc, keep):
    r"""BPTT in torch's kernels from t = T−1 down to 0 (``docs/bptt.md``, LSTM), mask folded in:

        dh' = k_t ⊙ (dout[t] + dh_{t+1→t})        dh_{t+1→t} = da_{t+1} W_hh  (dh_T at t = T−1)
        dc' = k_t ⊙ dc_t + dh' ⊙ o ⊙ (1 − tanh²(c'))
        da_i = dc' ⊙ g ⊙ i(1−i)     da_f = dc' ⊙ c ⊙ f(1−f)
        da_g = dc' ⊙ i ⊙ (1−g²)     da_o = dh' ⊙ tanh(c') ⊙ o(1−o)
        dc_{t−1} = dc' ⊙ f,         dh_{t→t−1} = da W_hh

    gates, tanh_c, cs, keep: as ``torch_forward`` left them; dout (T, B, H); dh_rec = dh_T and
    dc = dc_T (B, H, contiguous; dc is overwritten); dh_times_w: da ↦ da W_hh (B, H). Fills
    da (T, B, 4H), which may be gates itself: each gate is read for the last time by the line
    that writes its gradient. Returns (dh_{−1}, dc_{−1}), the gradients of h0 and c0.

    Each "upstream ⊙ derivative" is one torch kernel: ``sigmoid_backward(u, y) = u ⊙ y(1−y)``
    and ``tanh_backward(u, y) = u ⊙ (1−y²)``, which take the activation's output y. Writing the
    result over y itself is safe: each element is read before it is written.
    """
    H = dc.shape[1]
    dh = torch.empty_like(dh_rec)  # (B, H) dh' of the current step
    dc_prev = torch.empty_like(dc)  # (B, H) dc_{t−1}, then swapped with dc
    u, v = torch.empty_like(dc), torch.empty_like(dc)  # (B, H) scratch
    for t in range(gates.shape[0] - 1, -1, -1):
        i, f, g, o = gates[t].split(H, dim=1)  # (B, H) views each: activated gates
        da_i, da_f, da_g, da_o = da[t].split(H, dim=1)  # (B, H) views each: their gradients
        tc = tanh_c[t]  # tanh(c')
        torch.add(dout[t], dh_rec, out=dh)  # dh' = dout[t] + dh_{t+1→t}
        if keep is not None:
            dh.mul_(keep[t])  # dh' = k_t ⊙ (dout[t] + dh_{t+1→t})
            dc.mul_(keep[t])  # k_t ⊙ dc_t, the first term of dc'
        torch.mul(dh, o, out=u)  # u = dh' ⊙ o
        tanh_backward(u, tc, grad_input=u)  # u = dh' ⊙ o ⊙ (1 − tanh²(c'))
        dc.add_(u)  # dc' = k_t ⊙ dc_t + dh' ⊙ o ⊙ (1 − tanh²(c'))
        torch.mul(dh, tc, out=u)  # u = dh' ⊙ tanh(c')
        sigmoid_backward(u, o, grad_input=da_o)  # da_o = dh' ⊙ tanh(c') ⊙ o(1−o)
        # each gate is read for the last time by the line that writes its gradient
        torch.mul(dc, g, out=u)  # u = dc' ⊙ g, kept while g's gradient replaces g
        torch.mul(dc, i, out=v)  # v = dc' ⊙ i
        tanh_backward(v, g, grad_input=da_g)  # da_g = dc' ⊙ i ⊙ (1−g²)
        sigmoid_backward(u, i, grad_input=da_i)  # da_i = dc' ⊙ g ⊙ i(1−i)
        torch.mul(dc, f, out=dc_prev)  # dc_{t−1} = dc' ⊙ f
        torch.mul(dc, cs[t], out=u)  # u = dc' ⊙ c   (c = c_{t−1})
        sigmoid_backward(u, f, grad_input=da_f)  # da_f = dc' ⊙ c ⊙ f(1−f)
        dc, dc_prev = dc_prev, dc
        dh_rec = dh_times_w(da[t])  # dh_{t→t−1} = da W_hh   (B, H)
    return dh_rec, dc


def input_and_weight_gradients(how, needs, da, x, hs, weight_ih, db):
    """From every step's gate gradients da (T·B, 4H), each gradient as one GEMM (or sum) over all
    T·B rows, None where ``needs`` says it is not wanted (the op's needs_input_grad, in the order
    of forward's arguments: x, h0, c0, weight_ih, bias, weight_hh, …):

        dx_t = da_t W_ih,   db = Σ_t da_t,   dW_ih = Σ_t da_tᵀ x_t,   dW_hh = Σ_t da_tᵀ h_{t−1}

    db: the float64 sum the C kernel made on the way, or None to sum da here. Returns
    (dx (T, B, I), db (4H,), dW_ih (4H, I), dW_hh (4H, H))."""
    T, B, _ = x.shape
    H = hs.shape[2]
    linear, weight_grad = gemm.linear_product(how["linear"]), gemm.weight_product(how["weight"])
    dx = linear(da, weight_ih.t()).view(T, B, -1) if needs[0] else None  # dx = da W_ih
    if needs[4]:
        db = da.sum(0) if db is None else db.to(da.dtype)  # db = Σ da   (4H,)
    # (4H, T·B) @ (T·B, I or H) for the weights
    dw_ih = weight_grad(da, x.reshape(T * B, -1)) if needs[3] else None  # dW_ih = daᵀ x
    dw_hh = weight_grad(da, hs[:-1].reshape(T * B, H)) if needs[5] else None  # dW_hh = daᵀ h
    return dx, db, dw_ih, dw_hh


class LSTMSequence(torch.autograd.Function):
    """forward(x (T, B, I), h0 (B, H), c0 (B, H), weight_ih (4H, I), bias (4H,), weight_hh (4H, H),
    keep (T, B, 1) | None, retain_graph) → (outputs (T, B, H), h_T (B, H), c_T (B, H)). Not twice
    differentiable. outputs is a view of a saved buffer: torch refuses to modify it in place
    (RuntimeError), so it cannot corrupt backward."""

    @staticmethod
    # under bf16 autocast the recurrence stays float32
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, x, h0, c0, weight_ih, bias, weight_hh, keep, retain_graph):
        T, B, I = x.shape
        H = weight_hh.shape[1]
        how = paths(x, H, keep)  # the GEMM backends and the step path (kernels/choice.py)
        linear = gemm.linear_product(how["linear"])
        # the input GEMM and bias for all steps, straight into the buffer each step then
        # completes in place
        gates = linear(x.reshape(T * B, I), weight_ih, bias).view(T, B, 4 * H)  # (T, B, 4H)
        hs = x.new_empty(T + 1, B, H)  # (T+1, B, H) h_{-1}=h0, h_0 … h_{T-1} (after the mask)
        cs = x.new_empty(T + 1, B, H)  # (T+1, B, H) c_{-1}=c0, c_0 … c_{T-1} (after the mask)
        tanh_c = x.new_empty(T, B, H)  # (T, B, H) tanh(c') before the mask
        hs[0].copy_(h0)
        cs[0].copy_(c0)
        h_times_w = gemm.recurrent_product(how["recurrent"], weight_hh, B)  # h ↦ h W_hhᵀ (B, 4H)
        if how["step"] == "torch":
            torch_forward(h_times_w, gates, hs, cs, tanh_c, keep)
        else:  # a step kernel, on a GPU the loop as a CUDA graph (kernels/loops.py)
            buffers = loops.forward(how, h_times_w, gates, hs, cs, tanh_c, keep, weight_hh)
            gates, hs, cs, tanh_c = buffers
        ctx.save_for_backward(x, gates, hs, cs, tanh_c, weight_ih, weight_hh, keep)
        ctx.retain_graph, ctx.gates_overwritten, ctx.how = retain_graph, False, how
        return hs[1:], hs[T].clone(), cs[T].clone()

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dout, dh_T, dc_T):
        """BPTT (``torch_backward``, or a step kernel's loop on the same buffers), then every
        weight gradient as one GEMM over all steps (``input_and_weight_gradients``)."""
        # (torch would refuse too, in less plain words: a saved tensor changed)
        if ctx.gates_overwritten:
            raise RuntimeError(
                "lstm_sequence's backward overwrites its saved gates, so it runs once per "
                "forward; call lstm_sequence with retain_graph=True to backpropagate twice"
            )
        x, gates, hs, cs, tanh_c, weight_ih, weight_hh, keep = ctx.saved_tensors
        ctx.gates_overwritten = not ctx.retain_graph
        T, B, H4 = gates.shape
        how, needs = ctx.how, ctx.needs_input_grad
        dh_times_w = gemm.recurrent_product(how["recurrent"], weight_hh.t(), B)  # da ↦ da W_hh
        # every step's gate gradients (T, B, 4H), written over the gates unless retain_graph
        da = gates if not ctx.retain_graph else torch.empty_like(gates)
        dh_rec = dh_T.contiguous()  # (B, H) gradient reaching h_t from later
        dc = dc_T.clone(memory_format=torch.contiguous_format)  # (B, H) dc_t, then dc' of the step
        db = None  # the bias gradient, if the C kernel sums it on the way
        if how["step"] == "torch":
            dh_rec, dc = torch_backward(dh_times_w, gates, da, tanh_c, cs, dout, dh_rec, dc, keep)
        else:
            da, dh_rec, dc, db = loops.backward(how, dh_times_w, gates, da, tanh_c, cs, dout,
                                                dh_rec, dc, keep, weight_hh, needs[4])  # fmt: skip
        grads = input_and_weight_gradients(how, needs, da.view(T * B, H4), x, hs, weight_ih, db)
        dx, db, dw_ih, dw_hh = grads
        return dx, dh_rec, dc, dw_ih, db, dw_hh, None, None


def lstm_sequence(
    x: torch.Tensor,
    h0: torch.Tensor,
    c0: torch.Tensor,
    weight_ih: torch.Tensor,
    bias: torch.Tensor,
    weight_hh: torch.Tensor,
    keep: torch.Tensor | None = None,
    retain_graph: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One LSTM layer over a whole sequence; the same result as ``RecurrentLayer.forward``'s loop.

    x (T, B, I), h0 and c0 (B, H), weight_ih (4H, I), bias = b_ih + b_hh (4H,), weight_hh
    (4H, H), keep (T, B, 1) with 0 at padding (state reset) or None → outputs (T, B, H), h_T, c_T.
    retain_graph=True: the backward may run more than once (it then needs one more buffer).
    """
    if keep is not None:
        keep = keep.to(x.dtype).contiguous()  # (T, B, 1): keep[t] is one row of B numbers
    return LSTMSequence.apply(x, h0, c0, weight_ih, bias, weight_hh, keep, retain_graph)
