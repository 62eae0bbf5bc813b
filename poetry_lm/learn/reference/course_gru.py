"""The course's GRU: the reset gate before the matrix product, no biases, z flipped.

The homework text (媒体与认知 第三次作业) defines, with column vectors,

    z_t = σ(W_zh h_{t−1} + W_zx x_t)
    r_t = σ(W_rh h_{t−1} + W_rx x_t)
    ñ_t = tanh(W_h (r_t ⊗ h_{t−1}) + W_x x_t)
    h_t = (1 − z_t) ⊗ h_{t−1} + z_t ⊗ ñ_t

Here rows are batch items, so W_zh h becomes h W_zhᵀ; the six matrices keep the course's names
and shapes: W_zh, W_rh, W_h are (H, H) and W_zx, W_rx, W_x are (H, I). torch has no such cell
(its reset gate acts after the product, r ⊙ (W_hn h + b_hn)), so finite differences are the only
oracle: ``python -m poetry_lm gradcheck`` runs them as ``course-gru``.

The sign of da_z. Here z weighs the *new* candidate ñ, where torch's z weighs the old h, so

    ∂h'/∂z = ñ − h    (course)          against  h − n  (torch),

and da_z = dh' ⊙ (ñ − h) ⊙ z(1 − z) has the opposite sign to torch's formula. Copying torch's
(h − n) into this cell gives gradients of the right size and the wrong sign for W_zh and W_zx.
"""

import numpy as np

from .cells import _Cell, dsigmoid, dtanh, sigmoid


class CourseGRUCell(_Cell):
    """The course's GRU (module docstring); parameters W_zh, W_zx, W_rh, W_rx, W_h, W_x."""

    PARAMS = ("W_zh", "W_zx", "W_rh", "W_rx", "W_h", "W_x")

    def __init__(self, input_size, hidden_size, rng=None):
        """Every matrix from U(−1/√H, 1/√H), as the other cells; rng is a seed or Generator."""
        rng = np.random.default_rng(rng)
        self.input_size, self.hidden_size = input_size, hidden_size
        k = 1.0 / np.sqrt(hidden_size)
        for name in self.PARAMS:
            cols = hidden_size if name.endswith("h") else input_size
            setattr(self, name, rng.uniform(-k, k, (hidden_size, cols)))
        self.zero_grad()

    def forward(self, x, h):
        """x (B, I), h (B, H) → (h', cache)."""
        z = sigmoid(h @ self.W_zh.T + x @ self.W_zx.T)
        r = sigmoid(h @ self.W_rh.T + x @ self.W_rx.T)
        s = r * h  # the reset gate acts before W_h
        n = np.tanh(s @ self.W_h.T + x @ self.W_x.T)
        return (1.0 - z) * h + z * n, (x, h, z, r, s, n)

    def backward(self, dh, cache):
        """Given dh', returns (dx, dh) and adds the six weight gradients into ``self.grads``:

        da_n = dh' ⊙ z ⊙ (1 − n²)
        da_z = dh' ⊙ (n − h) ⊙ z(1 − z)          the sign flipped against torch's GRU
        ds   = da_n W_h                           s = r ⊙ h
        da_r = ds ⊙ h ⊙ r(1 − r)
        dW_h += da_nᵀ s,  dW_x += da_nᵀ x,  dW_z* and dW_r* likewise with h and x
        dx = da_z W_zx + da_r W_rx + da_n W_x
        dh = dh' ⊙ (1 − z) + ds ⊙ r + da_z W_zh + da_r W_rh   (four paths, summed)
        """
        x, h, z, r, s, n = cache
        da_n = dh * z * dtanh(n)
        da_z = dh * (n - h) * dsigmoid(z)
        ds = da_n @ self.W_h
        da_r = ds * h * dsigmoid(r)
        for name, da, inp in (
            ("W_zh", da_z, h),
            ("W_zx", da_z, x),
            ("W_rh", da_r, h),
            ("W_rx", da_r, x),
            ("W_h", da_n, s),
            ("W_x", da_n, x),
        ):
            self.grads[name] += da.T @ inp
        dx = da_z @ self.W_zx + da_r @ self.W_rx + da_n @ self.W_x
        dh_prev = dh * (1.0 - z) + ds * r + da_z @ self.W_zh + da_r @ self.W_rh
        return dx, dh_prev
