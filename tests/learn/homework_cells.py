"""Cells written the way the course's homework writes them, to test the adapter of
poetry_lm/learn/plugin.py: gradients named dW_ih …, backward(delta, h, h_prev_l, h_prev_t), batch
means or sums, and a stateful GRU with the course's names whose backward(delta) reuses forward's
values."""

import numpy as np


class MeanRNNCell:
    """tanh RNN; parameter gradients averaged over the batch, as the course's rnn_cell.py."""

    reduce = staticmethod(lambda g, batch: g / batch)

    def __init__(self, input_size, hidden_size):
        self.W_ih = np.random.randn(hidden_size, input_size) * 0.5
        self.W_hh = np.random.randn(hidden_size, hidden_size) * 0.5
        self.b_ih = np.random.randn(hidden_size) * 0.5
        self.b_hh = np.random.randn(hidden_size) * 0.5
        self.zero_grad()

    def zero_grad(self):
        for name in ("W_ih", "W_hh", "b_ih", "b_hh"):
            setattr(self, "d" + name, np.zeros_like(getattr(self, name)))

    def forward(self, x, h):
        return np.tanh(x @ self.W_ih.T + self.b_ih + h @ self.W_hh.T + self.b_hh)

    def backward(self, delta, h, h_prev_l, h_prev_t):
        batch = delta.shape[0]
        dz = delta * (1 - h * h)
        self.dW_ih += self.reduce(dz.T @ h_prev_l, batch)
        self.dW_hh += self.reduce(dz.T @ h_prev_t, batch)
        self.db_ih += self.reduce(dz.sum(axis=0), batch)
        self.db_hh += self.reduce(dz.sum(axis=0), batch)
        return dz @ self.W_ih, dz @ self.W_hh


class SumRNNCell(MeanRNNCell):
    """The same cell with batch sums."""

    reduce = staticmethod(lambda g, batch: g)


class CourseGRU:
    """The course's GRU (gru_cell.py): names Wzh … dWx, forward caches, backward(delta)."""

    def __init__(self, input_size, hidden_size):
        for name in ("Wzh", "Wrh", "Wh"):
            setattr(self, name, np.random.randn(hidden_size, hidden_size) * 0.5)
        for name in ("Wzx", "Wrx", "Wx"):
            setattr(self, name, np.random.randn(hidden_size, input_size) * 0.5)
        for name in ("Wzh", "Wrh", "Wh", "Wzx", "Wrx", "Wx"):
            setattr(self, "d" + name, np.zeros_like(getattr(self, name)))

    def forward(self, x, h):
        sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
        self.x, self.hidden = x, h
        self.z = sig(h @ self.Wzh.T + x @ self.Wzx.T)
        self.r = sig(h @ self.Wrh.T + x @ self.Wrx.T)
        self.n = np.tanh((self.r * h) @ self.Wh.T + x @ self.Wx.T)
        return (1 - self.z) * h + self.z * self.n

    def backward(self, delta):
        x, h, z, r, n = self.x, self.hidden, self.z, self.r, self.n
        dz = delta * (n - h) * z * (1 - z)
        dn = delta * z * (1 - n * n)
        ds = dn @ self.Wh
        dr = ds * h * r * (1 - r)
        self.dWzh += dz.T @ h
        self.dWzx += dz.T @ x
        self.dWrh += dr.T @ h
        self.dWrx += dr.T @ x
        self.dWh += dn.T @ (r * h)
        self.dWx += dn.T @ x
        dx = dz @ self.Wzx + dr @ self.Wrx + dn @ self.Wx
        dh = delta * (1 - z) + ds * r + dz @ self.Wzh + dr @ self.Wrh
        return dx, dh


class ForgetsBiasCell(SumRNNCell):
    """Planted bug: db_hh is never accumulated."""

    def backward(self, delta, h, h_prev_l, h_prev_t):
        saved = self.db_hh.copy()
        out = super().backward(delta, h, h_prev_l, h_prev_t)
        self.db_hh = saved
        return out


class AssignsCell(SumRNNCell):
    """Planted bug: dW_hh = … instead of +=, so only the last step BPTT visits survives."""

    def backward(self, delta, h, h_prev_l, h_prev_t):
        self.dW_hh = np.zeros_like(self.dW_hh)
        return super().backward(delta, h, h_prev_l, h_prev_t)


class BrokenCell(SumRNNCell):
    """Its backward raises, as an unfinished homework does."""

    def backward(self, delta, h, h_prev_l, h_prev_t):
        raise NotImplementedError("TODO")


class MeanLSTMForgetsCellPath:
    """An LSTM with batch-mean gradients whose backward returns dc′ to the step before instead
    of dc′ ⊙ f: every parameter gradient of a longer sequence is then off as well."""

    def __init__(self, input_size, hidden_size):
        H = hidden_size
        self.W_ih = np.random.randn(4 * H, input_size) * 0.5
        self.W_hh = np.random.randn(4 * H, H) * 0.5
        self.b_ih = np.random.randn(4 * H) * 0.5
        self.b_hh = np.random.randn(4 * H) * 0.5
        for name in ("W_ih", "W_hh", "b_ih", "b_hh"):
            setattr(self, "d" + name, np.zeros_like(getattr(self, name)))

    def forward(self, x, h, c):
        a = x @ self.W_ih.T + self.b_ih + h @ self.W_hh.T + self.b_hh
        i, f, g, o = np.split(a, 4, axis=1)
        i, f, o, g = (1 / (1 + np.exp(-i)), 1 / (1 + np.exp(-f)), 1 / (1 + np.exp(-o)), np.tanh(g))
        c_new = f * c + i * g
        self.cache = (x, h, c, i, f, g, o, np.tanh(c_new))
        return o * np.tanh(c_new), c_new

    def backward(self, delta, delta_c):
        x, h, c, i, f, g, o, tc = self.cache
        batch = x.shape[0]
        dc = delta_c + delta * o * (1 - tc**2)
        da = np.concatenate(
            [
                dc * g * i * (1 - i),
                dc * c * f * (1 - f),
                dc * i * (1 - g**2),
                delta * tc * o * (1 - o),
            ],
            axis=1,
        )
        self.dW_ih += da.T @ x / batch
        self.dW_hh += da.T @ h / batch
        self.db_ih += da.sum(0) / batch
        self.db_hh += da.sum(0) / batch
        return da @ self.W_ih, da @ self.W_hh, dc  # the bug: dc, not dc * f
