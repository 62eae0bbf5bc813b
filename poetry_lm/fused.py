r"""A hand-fused LSTM sequence op: the whole time loop as one autograd node.

``LSTMLayer`` in ``model.py`` loops over steps under autograd, so every step records about a
dozen graph nodes and backward walks them one by one. ``LSTMSequence`` runs the same loop with
autograd off, keeps only what its hand-written backward needs in buffers allocated once per
call, and forms the recurrent weight gradient as ONE GEMM over all steps.

Notation as in ``docs/bptt.md`` and ``poetry_lm/reference/cells.py``: rows are batch items,
gates in torch's order i, f, g, o, primes mark the state a step produces. Step t reads the
precomputed input gates ``xw[t] = x_t W_ihᵀ + b_ih + b_hh`` (``LSTMLayer.input_gates``) and

    a   = xw[t] + h W_hhᵀ                         [a_i | a_f | a_g | a_o], (B, 4H)
    i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
    c'  = f ⊙ c + i ⊙ g
    h'  = o ⊙ tanh(c')
    h_t = k_t ⊙ h',   c_t = k_t ⊙ c'              k = keep[t] (B, 1); k ≡ 1 without a mask

so a zero in ``keep`` resets the state, exactly as ``LSTMLayer.forward`` does, and the gradient
through a masked step is multiplied by the same k_t. ``outputs[t] = h_t``.

Because xw enters ``a`` additively, ∂L/∂xw[t] = da_t: the gate gradients *are* the gradient of
xw, and autograd carries them on into W_ih, the biases and x through ``input_gates``' GEMM.
"""
from __future__ import annotations

import torch


class LSTMSequence(torch.autograd.Function):
    """forward(xw (T, B, 4H), h0 (B, H), c0 (B, H), weight_hh (4H, H), keep (T, B, 1) | None)
    → (outputs (T, B, H), h_T (B, H), c_T (B, H)). Not twice differentiable. outputs is a view of
    a saved buffer: torch refuses to modify it in place (RuntimeError), so it cannot corrupt backward."""

    @staticmethod
    def forward(ctx, xw, h0, c0, weight_hh, keep):
        T, B, H4 = xw.shape
        H = H4 // 4
        gates = xw.new_empty(T, B, H4)         # (T, B, 4H) activated [i | f | g | o] per step
        hs = xw.new_empty(T + 1, B, H)         # (T+1, B, H) h_{-1}=h0, h_0 … h_{T-1} (after the mask)
        cs = xw.new_empty(T + 1, B, H)         # (T+1, B, H) c_{-1}=c0, c_0 … c_{T-1} (after the mask)
        tanh_c = xw.new_empty(T, B, H)         # (T, B, H) tanh(c') before the mask
        gates.copy_(xw)                        # xw for all steps; each step adds its h W_hhᵀ in place
        hs[0].copy_(h0)
        cs[0].copy_(c0)
        w_t = weight_hh.t().contiguous()       # (H, 4H) copied once: per-step GEMMs run ~30% faster than on the view
        for t in range(T):
            a = gates[t]                                       # (B, 4H) view into the buffer
            a.addmm_(hs[t], w_t)                               # a = xw[t] + h W_hhᵀ
            a[:, :2 * H].sigmoid_()                            # i = σ(a_i), f = σ(a_f)
            a[:, 2 * H:3 * H].tanh_()                          # g = tanh(a_g)
            a[:, 3 * H:].sigmoid_()                            # o = σ(a_o)
            i, f, g, o = a.split(H, dim=1)                     # (B, H) views each
            c_new, h_new = cs[t + 1], hs[t + 1]                # (B, H) views into the buffers
            torch.mul(f, cs[t], out=c_new)                     # c' = f ⊙ c ...
            c_new.addcmul_(i, g)                               #      ... + i ⊙ g
            torch.tanh(c_new, out=tanh_c[t])                   # tanh(c'), kept for backward
            torch.mul(o, tanh_c[t], out=h_new)                 # h' = o ⊙ tanh(c')
            if keep is not None:
                c_new.mul_(keep[t])                            # c_t = k_t ⊙ c'   (reset at padding)
                h_new.mul_(keep[t])                            # h_t = k_t ⊙ h'
        ctx.save_for_backward(gates, hs, cs, tanh_c, weight_hh, keep)
        return hs[1:], hs[T].clone(), cs[T].clone()

    @staticmethod
    def backward(ctx, dout, dh_T, dc_T):
        r"""BPTT from t = T−1 down to 0 (see docs/bptt.md, LSTM), with the mask folded in.

        The loop-invariant factors are computed for all steps at once, before the loop:

            D = [g ⊙ i(1−i) | c ⊙ f(1−f) | i ⊙ (1−g²) | tanh(c') ⊙ o(1−o)]     (T, B, 4H)
            P = o ⊙ (1 − tanh²(c'))                                             (T, B, H)

        so that, given dh' and the full dc', the gate gradients are only two products:

            da = [dc' | dc' | dc' | dh'] ⊙ D

        which the loop writes in place over D. The step loop then is

            dh' = k_t ⊙ (dout[t] + dh_{t+1→t})        dh_{t+1→t} = da_{t+1} W_hh  (dh_T at t = T−1)
            dc' = k_t ⊙ dc_t + dh' ⊙ P_t              the part through h' = o ⊙ tanh(c')
            da  = [dc' | dc' | dc' | dh'] ⊙ D_t
            dc_{t−1} = dc' ⊙ f,    dh_{t→t−1} = da W_hh

        and the weight gradient, summed over steps, is one GEMM: dW_hh = Σ_t da_tᵀ h_{t−1}.
        """
        gates, hs, cs, tanh_c, weight_hh, keep = ctx.saved_tensors
        T, B, H4 = gates.shape
        H = H4 // 4
        i, f, g, o = gates.split(H, dim=2)                     # (T, B, H) views each

        # D, all steps at once (whole-tensor ops first: no temporaries); it becomes da (= dxw) in place
        da = torch.mul(gates, gates)                           # (T, B, 4H) y²
        torch.sub(gates, da, out=da)                           # y − y² = y(1−y): σ' in the i, f, o blocks
        d_i, d_f, d_g, d_o = da.split(H, dim=2)                # (T, B, H) views each
        d_g.add_(1).sub_(g)                                    # g(1−g) + 1 − g = 1 − g²: tanh' in the g block
        d_i.mul_(g)                                            # g ⊙ i(1−i)
        d_f.mul_(cs[:-1])                                      # c_{t−1} ⊙ f(1−f)
        d_g.mul_(i)                                            # i ⊙ (1−g²)
        d_o.mul_(tanh_c)                                       # tanh(c') ⊙ o(1−o)
        P = torch.mul(tanh_c, tanh_c).mul_(o)                  # (T, B, H) o ⊙ tanh²(c')
        torch.sub(o, P, out=P)                                 #   → o ⊙ (1 − tanh²(c'))

        dh = torch.empty_like(dh_T)                            # (B, H) dh' of the current step
        dh_rec = dh_T.clone()                                  # (B, H) gradient reaching h_t from later
        dc = dc_T.clone()                                      # (B, H) dc_t, then dc' in place
        for t in range(T - 1, -1, -1):
            if keep is None:
                torch.add(dout[t], dh_rec, out=dh)             # dh' = dout[t] + dh_{t+1→t}
            else:
                torch.add(dout[t], dh_rec, out=dh).mul_(keep[t])  # dh' = k_t ⊙ (dout[t] + dh_{t+1→t})
                dc.mul_(keep[t])                               # k_t ⊙ dc_t
            dc.addcmul_(dh, P[t])                              # dc' += dh' ⊙ P_t
            da_t = da[t]                                       # (B, 4H)
            da_t.view(B, 4, H)[:, :3].mul_(dc.unsqueeze(1))    # [da_i | da_f | da_g] = dc' ⊙ D
            da_t[:, 3 * H:].mul_(dh)                           # da_o = dh' ⊙ D
            dc.mul_(f[t])                                      # dc_{t−1} = dc' ⊙ f
            torch.mm(da_t, weight_hh, out=dh_rec)              # dh_{t→t−1} = da W_hh   (B, H)

        dw = None
        if ctx.needs_input_grad[3]:                            # dW_hh = Σ_t da_tᵀ h_{t−1}: one GEMM
            dw = da.view(T * B, H4).t() @ hs[:-1].reshape(T * B, H)   # (4H, T·B) @ (T·B, H) → (4H, H)
        return da, dh_rec, dc, dw, None                        # dxw = da, dh0, dc0, dW_hh, keep


def lstm_sequence(xw: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, weight_hh: torch.Tensor,
                  keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the LSTM recurrence over precomputed input gates; same result as ``LSTMLayer``'s loop.

    xw (T, B, 4H) = ``LSTMLayer.input_gates(x)``, h0 and c0 (B, H), weight_hh (4H, H), keep
    (T, B, 1) with 0 at padding (state reset) or None → outputs (T, B, H), h_T, c_T (B, H).
    """
    if keep is not None:
        keep = keep.to(xw.dtype)
    return LSTMSequence.apply(xw, h0, c0, weight_hh, keep)
