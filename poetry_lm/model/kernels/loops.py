"""The fused LSTM's time loops with a step kernel: per step one recurrent product and one call of
a kernel (``cpu_step.py``'s C loop or ``triton_lstm.py``'s Triton kernel) that does all of the
step's elementwise work, forward and backward; on a GPU the whole loop is a CUDA graph.

The arithmetic, the buffers and their notation are those of ``model/fused.py``'s torch kernels:
``forward`` and ``backward`` here are what its ``LSTMSequence`` calls where ``choice.py`` chooses
a kernel, and they fill the same buffers with the same numbers (to float32 rounding)."""

from __future__ import annotations

import torch

from poetry_lm.model.kernels import cpu_step, triton_lstm


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


def forward(how, h_times_w, gates, hs, cs, tanh_c, keep, weight_hh):
    """The time loop on the path ``how`` (``choice.paths``, a step other than "torch"): completes
    gates and fills hs, cs, tanh_c as ``fused.torch_forward`` does. Returns the four buffers:
    these same tensors, or on the CUDA-graph path copies of the graph's own."""
    if how["graphs"] == "yes":  # the whole loop as one CUDA graph
        static = triton_lstm.run_graphed(
            "forward",
            graphed_forward,
            dict(gates=gates, hs=hs, cs=cs, tanh_c=tanh_c, keep=keep, w_hh=weight_hh),
        )  # copies, as the graph's buffers are reused by the next call of this shape
        return tuple(static[k].clone() for k in ("gates", "hs", "cs", "tanh_c"))
    # one kernel call per step: a += rec, activations, c', h'
    step = cpu_step if how["step"] == "C kernel" else triton_lstm
    forward_loop(step, h_times_w, gates, hs, cs, tanh_c, keep)
    return gates, hs, cs, tanh_c


def backward(how, dh_times_w, gates, da, tanh_c, cs, dout, dh_rec, dc, keep, weight_hh, bias_grad):
    """BPTT on the path ``how`` (a step other than "torch"), as ``fused.torch_backward``: fills
    da (T, B, 4H) and turns dc (B, H) from dc_T into dc_{−1}. Returns (da, dh_{−1}, dc_{−1}, db):
    on the CUDA-graph path da is the graph's copy of the gates, with the gradients written over
    them; db (4H,) float64 is the bias gradient the C kernel sums on the way where bias_grad,
    else None (the caller sums da)."""
    if how["graphs"] == "yes":  # the whole loop as one CUDA graph, da over its gates copy
        static = triton_lstm.run_graphed(
            "backward",
            graphed_backward,
            dict(gates=gates, tanh_c=tanh_c, cs=cs, dout=dout, dh=dh_rec, dc=dc, keep=keep,
                 w_hh=weight_hh),
        )  # fmt: skip
        return static["gates"], static["dh"].clone(), static["dc"].clone(), None
    db = None
    if how["step"] == "C kernel":  # one call per step: da[t], dc_{t−1} and db in place
        step = cpu_step
        if bias_grad:
            db = gates.new_zeros(gates.shape[2], dtype=torch.float64)
    else:  # one Triton kernel call per step
        step = triton_lstm
    dh_rec = backward_loop(step, dh_times_w, gates, da, tanh_c, cs, dout.contiguous(), dh_rec, dc,
                           keep, db)  # fmt: skip
    return da, dh_rec, dc, db
