r"""A hand-fused LSTM layer: the input GEMM and the whole time loop as one autograd node.

``RecurrentLayer.forward`` in ``model.py`` loops over steps under autograd, so every step
records about a dozen graph nodes and backward walks them one by one. ``LSTMSequence`` runs the
same computation with autograd off, in one (T, B, 4H) buffer that it fills with the input GEMM
and activates in place step by step; its hand-written backward computes the gate gradients
step by step and then forms every weight gradient as ONE GEMM over all steps.

The backward writes each step's gate gradients over that step's saved gate activations, which it
has just read for the last time. A second (T, B, 4H) buffer would be fresh memory every call, and
the kernel maps fresh memory page by page on first touch: that cost ~4 ms of a 115 ms step at
H = 256. So by default the backward runs once per forward; ``retain_graph=True`` keeps the saved
activations intact for a graph that is backpropagated more than once (``gradcheck`` does that).

Notation as in ``docs/bptt.md`` and ``poetry_lm/reference/cells.py``: rows are batch items,
gates in torch's order i, f, g, o, primes mark the state a step produces. With
``b = b_ih + b_hh``, step t computes

    a   = x_t W_ihᵀ + b + h W_hhᵀ                 [a_i | a_f | a_g | a_o], (B, 4H)
    i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
    c'  = f ⊙ c + i ⊙ g
    h'  = o ⊙ tanh(c')
    h_t = k_t ⊙ h',   c_t = k_t ⊙ c'              k = keep[t] (B, 1); k ≡ 1 without a mask

so a zero in ``keep`` resets the state, exactly as ``RecurrentLayer.forward`` does, and the
gradient through a masked step is multiplied by the same k_t. ``outputs[t] = h_t``.

Speed (``docs/performance.md``): ``paths`` says how a call runs. The GEMMs go through the
library that is fastest on this machine and shape (``gemm.py``: MKL, oneDNN or plain torch,
measured once and cached), and each step's elementwise work is one call: a compiled C loop on a
CPU (``cpu_step.py``), a Triton kernel on a GPU (``triton_lstm.py``), where the whole time loop
is also captured as a CUDA graph; torch's kernels (below) where neither can be had. All paths
compute the arithmetic written here, and the tests hold each to the torch-kernel path.
"""

from __future__ import annotations

import os

import torch

from poetry_lm.model import cpu_step, gemm, triton_lstm

# u ⊙ σ'(a) and u ⊙ tanh'(a) from y = σ(a) or tanh(a): one kernel each, into grad_input
sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
tanh_backward = torch.ops.aten.tanh_backward.grad_input

PACK_FROM_STEPS = gemm.PACK_FROM_STEPS
STEPS = {"c": "C kernel", "triton": "Triton", "torch": "torch"}  # POETRY_LM_STEP → path


def step_path(x: torch.Tensor, keep: torch.Tensor | None = None) -> str:
    """How each step's elementwise work runs: "C kernel" (``cpu_step.py``, float32 on a CPU),
    "Triton" (``triton_lstm.py``, float32/float64 on a GPU) or "torch" (its kernels: the fallback
    everywhere). ``POETRY_LM_STEP=c|triton|torch`` forces one where it applies; "triton" on CPU
    tensors runs Triton's interpreter (for tests). Raises ValueError for another name."""
    forced = os.environ.get("POETRY_LM_STEP", "")
    if forced and forced not in STEPS:
        raise ValueError(f"POETRY_LM_STEP must be one of {', '.join(STEPS)}, not {forced!r}")
    if forced == "torch":
        return "torch"
    if x.dtype in (torch.float32, torch.float64) and triton_lstm.available():
        if x.is_cuda or forced == "triton":
            return "Triton"
    if x.device.type == "cpu" and x.dtype == torch.float32 and cpu_step.usable(keep):
        return "C kernel"
    return "torch"


def paths(x: torch.Tensor, hidden: int, keep: torch.Tensor | None = None) -> dict[str, str]:
    """How ``lstm_sequence`` runs for an input x (T, B, I) and hidden width H: the GEMM backend
    of each role (``gemm.py``), the step's elementwise path (``step_path``), and whether the
    time loop is a CUDA graph ("graphs": "yes"/"no")."""
    step = step_path(x, keep)
    graphs = step == "Triton" and triton_lstm.graphs_enabled(x)
    return {**gemm.backends_for(x, hidden), "step": step, "graphs": "yes" if graphs else "no"}


def forward_loop(step, h_times_w, gates, hs, cs, tanh_c, keep) -> None:
    """The time loop with a step kernel module (``cpu_step`` or ``triton_lstm``): per step one
    recurrent product and one kernel call, which completes gates[t] and writes hs[t+1], cs[t+1],
    tanh_c[t] (hs[0], cs[0] hold h0, c0)."""
    T = gates.shape[0]
    # views made once per call (unbind), not by indexing at every step
    g, h, c, tc = gates.unbind(0), hs.unbind(0), cs.unbind(0), tanh_c.unbind(0)
    k = [None] * T if keep is None else keep.unbind(0)
    for t in range(T):
        step.forward_step(g[t], h_times_w(h[t]), c[t], k[t], c[t + 1], h[t + 1], tc[t])


def backward_loop(step, dh_times_w, gates, da, tanh_c, cs, dout, dh_rec, dc, keep, db=None):
    """BPTT with a step kernel module: fills da (T, B, 4H) (may be gates) and turns dc (B, H)
    from dc_T into dc_{−1} in place; returns dh_{−1} (B, H), the gradient of h0. db (4H,)
    or None: += da summed over steps and rows."""
    T = gates.shape[0]
    g, d, tc, c, do = gates.unbind(0), da.unbind(0), tanh_c.unbind(0), cs.unbind(0), dout.unbind(0)
    k = [None] * T if keep is None else keep.unbind(0)
    for t in range(T - 1, -1, -1):
        step.backward_step(g[t], d[t], tc[t], c[t], do[t], dh_rec, dc, k[t], db)
        dh_rec = dh_times_w(d[t])  # dh_{t→t−1} = da W_hh   (B, H)
    return dh_rec


def graphed_forward(gates, hs, cs, tanh_c, keep, w_hh) -> None:
    """``forward_loop`` on a GPU with Triton, in the form ``run_graphed`` captures."""
    forward_loop(triton_lstm, lambda m: m @ w_hh.t(), gates, hs, cs, tanh_c, keep)


def graphed_backward(gates, tanh_c, cs, dout, dh, dc, keep, w_hh) -> None:
    """``backward_loop`` on a GPU with Triton, capturable: the gate gradients go over gates, the
    gradient of h0 into dh (which holds dh_T on entry)."""
    dh.copy_(backward_loop(triton_lstm, lambda m: m @ w_hh, gates, gates, tanh_c, cs, dout, dh,
                           dc, keep))  # fmt: skip


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
        how = paths(x, H, keep)
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
        if how["graphs"] == "yes":  # the whole loop as one CUDA graph
            static = triton_lstm.run_graphed(
                "forward",
                graphed_forward,
                dict(gates=gates, hs=hs, cs=cs, tanh_c=tanh_c, keep=keep, w_hh=weight_hh),
            )  # copies, as the graph's buffers are reused by the next call of this shape
            gates, hs, cs, tanh_c = (static[k].clone() for k in ("gates", "hs", "cs", "tanh_c"))
        elif how["step"] != "torch":  # one kernel call per step: a += rec, activations, c', h'
            step = cpu_step if how["step"] == "C kernel" else triton_lstm
            forward_loop(step, h_times_w, gates, hs, cs, tanh_c, keep)
        else:
            for t in range(T):
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
        ctx.save_for_backward(x, gates, hs, cs, tanh_c, weight_ih, weight_hh, keep)
        ctx.retain_graph, ctx.gates_overwritten, ctx.how = retain_graph, False, how
        return hs[1:], hs[T].clone(), cs[T].clone()

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dout, dh_T, dc_T):
        r"""BPTT from t = T−1 down to 0 (see docs/bptt.md, LSTM), with the mask folded in:

            dh' = k_t ⊙ (dout[t] + dh_{t+1→t})        dh_{t+1→t} = da_{t+1} W_hh  (dh_T at t = T−1)
            dc' = k_t ⊙ dc_t + dh' ⊙ o ⊙ (1 − tanh²(c'))
            da_i = dc' ⊙ g ⊙ i(1−i)     da_f = dc' ⊙ c ⊙ f(1−f)
            da_g = dc' ⊙ i ⊙ (1−g²)     da_o = dh' ⊙ tanh(c') ⊙ o(1−o)
            dc_{t−1} = dc' ⊙ f,         dh_{t→t−1} = da W_hh

        and then, summed over steps, each weight gradient is one GEMM:
        dW_hh = Σ_t da_tᵀ h_{t−1}, dW_ih = Σ_t da_tᵀ x_t, db = Σ_t da_t, and dx_t = da_t W_ih.
        Without the C kernel (``cpu_step.py``, which does all of a step in one call), each
        "upstream ⊙ derivative" is one torch kernel: ``sigmoid_backward(u, y) = u ⊙ y(1−y)`` and
        ``tanh_backward(u, y) = u ⊙ (1−y²)``, which take the activation's output y. Writing
        the result over y itself is safe: each element is read before it is written.
        """
        # (torch would refuse too, in less plain words: a saved tensor changed)
        if ctx.gates_overwritten:
            raise RuntimeError(
                "lstm_sequence's backward overwrites its saved gates, so it runs once per "
                "forward; call lstm_sequence with retain_graph=True to backpropagate twice"
            )
        x, gates, hs, cs, tanh_c, weight_ih, weight_hh, keep = ctx.saved_tensors
        ctx.gates_overwritten = not ctx.retain_graph
        T, B, H4 = gates.shape
        H = H4 // 4
        how = ctx.how
        dh_times_w = gemm.recurrent_product(how["recurrent"], weight_hh.t(), B)  # da ↦ da W_hh
        # every step's gate gradients (T, B, 4H), written over the gates unless retain_graph
        da = gates if not ctx.retain_graph else torch.empty_like(gates)
        dh_rec = dh_T.contiguous()  # (B, H) gradient reaching h_t from later
        dc = dc_T.clone(memory_format=torch.contiguous_format)  # (B, H) dc_t, then dc' of the step
        if how["graphs"] == "yes":  # the whole loop as one CUDA graph, da over its gates copy
            static = triton_lstm.run_graphed(
                "backward",
                graphed_backward,
                dict(gates=gates, tanh_c=tanh_c, cs=cs, dout=dout, dh=dh_rec, dc=dc, keep=keep,
                     w_hh=weight_hh),
            )  # fmt: skip
            da, dh_rec, dc = static["gates"], static["dh"].clone(), static["dc"].clone()
        elif how["step"] == "C kernel":  # one call per step: da[t], dc_{t−1} and db in place
            db = gates.new_zeros(H4, dtype=torch.float64) if ctx.needs_input_grad[4] else None
            dh_rec = backward_loop(cpu_step, dh_times_w, gates, da, tanh_c, cs, dout.contiguous(),
                                   dh_rec, dc, keep, db)  # fmt: skip
        elif how["step"] == "Triton":  # one kernel call per step
            dh_rec = backward_loop(triton_lstm, dh_times_w, gates, da, tanh_c, cs,
                                   dout.contiguous(), dh_rec, dc, keep)  # fmt: skip
        else:
            dh = torch.empty_like(dh_rec)  # (B, H) dh' of the current step
            dc_prev = torch.empty_like(dc)  # (B, H) dc_{t−1}, then swapped with dc
            tmp, tmp2 = torch.empty_like(dc), torch.empty_like(dc)  # (B, H) scratch
            for t in range(T - 1, -1, -1):
                i, f, g, o = gates[t].split(H, dim=1)  # (B, H) views each: activated gates
                da_i, da_f, da_g, da_o = da[t].split(H, dim=1)  # (B, H) views each: their gradients
                torch.add(dout[t], dh_rec, out=dh)  # dh' = dout[t] + dh_{t+1→t}
                if keep is not None:
                    dh.mul_(keep[t])  # … ⊙ k_t
                    dc.mul_(keep[t])  # k_t ⊙ dc_t
                # dh' ⊙ o ⊙ (1 − tanh²(c'))
                tanh_backward(torch.mul(dh, o, out=tmp), tanh_c[t], grad_input=tmp)
                dc.add_(tmp)  # dc' = k_t ⊙ dc_t + dh' ⊙ o ⊙ (1 − tanh²(c'))
                # dh' ⊙ tanh(c') ⊙ o(1−o)
                sigmoid_backward(torch.mul(dh, tanh_c[t], out=tmp), o, grad_input=da_o)
                # each gate is read for the last time by the line that writes its gradient
                torch.mul(dc, g, out=tmp)  # dc' ⊙ g, kept while g's gradient replaces g
                tanh_backward(torch.mul(dc, i, out=tmp2), g, grad_input=da_g)  # dc' ⊙ i ⊙ (1−g²)
                sigmoid_backward(tmp, i, grad_input=da_i)  # dc' ⊙ g ⊙ i(1−i)
                torch.mul(dc, f, out=dc_prev)  # dc_{t−1} = dc' ⊙ f
                # dc' ⊙ c ⊙ f(1−f)
                sigmoid_backward(torch.mul(dc, cs[t], out=tmp), f, grad_input=da_f)
                dc, dc_prev = dc_prev, dc
                dh_rec = dh_times_w(da[t])  # dh_{t→t−1} = da W_hh   (B, H)

        da = da.view(T * B, H4)
        needs = ctx.needs_input_grad
        linear, weight_grad = gemm.linear_product(how["linear"]), gemm.weight_product(how["weight"])
        dx = linear(da, weight_ih.t()).view(T, B, -1) if needs[0] else None  # (T, B, I)
        if needs[4]:  # db = Σ da (4H,), unless the C kernel summed it on the way
            db = da.sum(0) if how["step"] != "C kernel" else db.to(da.dtype)
        else:
            db = None
        # dW_ih = daᵀ x and dW_hh = daᵀ h over all T·B rows: (4H, T·B) @ (T·B, I or H)
        dw_ih = weight_grad(da, x.reshape(T * B, -1)) if needs[3] else None
        dw_hh = weight_grad(da, hs[:-1].reshape(T * B, H)) if needs[5] else None
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
