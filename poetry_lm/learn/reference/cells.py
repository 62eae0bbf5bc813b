"""RNN, LSTM and GRU cells in numpy, with backpropagation through time written out by hand.

Conventions
-----------
Rows are batch items: x is (B, I), the states h and c are (B, H). The parameters have torch's
names, shapes and gate order, so the weights of ``torch.nn.RNN/LSTM/GRU`` (``weight_ih_l0``, ...)
copy over one to one:

    weight_ih (G*H, I),  weight_hh (G*H, H),  bias_ih (G*H,),  bias_hh (G*H,)

with G = 1 (RNN), 4 (LSTM, gates i, f, g, o) or 3 (GRU, gates r, z, n). The pre-activations are
gi = x W_ih^T + b_ih and gh = h W_hh^T + b_hh; RNN and LSTM only use their sum a = gi + gh.

``forward`` returns the new state(s) and a cache. ``backward`` takes the gradient of the loss L
with respect to the new state(s), adds the parameter gradients into ``self.grads`` and returns
the gradients with respect to the input and the previous state(s). ``dX`` means dL/dX and ⊙ the
elementwise product.

``forward_sequence(cell, xs, ...)`` and ``bptt(cell, dout, ...)`` run the time loop for any
object with ``parameters()``, a ``grads`` dict, ``forward`` and ``backward`` as above (a class of
your own need not subclass ``_Cell``); the cells' methods of the same names call them.

The backward passes below are the exercises' answers: ``python -m poetry_lm exercise init DIR``
writes a copy of this file with their bodies left to write.

Why torch's GRU and not the course's
------------------------------------
One course text uses a GRU without biases:

    z = σ(W_zh h + W_zx x),  r = σ(W_rh h + W_rx x),  ñ = tanh(W_h (r ⊙ h) + W_x x),
    h' = (1 - z) ⊙ h + z ⊙ ñ.

Its z plays the role of torch's 1 - z; that part is only a relabelling. But it applies the reset
gate to h *before* the matrix product, W_h (r ⊙ h), while torch (like cuDNN) applies it after,
r ⊙ (W_hn h + b_hn). These differ for general weights, so the two cells compute different
functions, not the same function in two notations. This project follows torch's form so that
weights load directly from torch's modules, and torch can serve as the test oracle. The course's
cell is ``CourseGRUCell`` in course_gru.py, checked by finite differences only.
"""

import numpy as np

PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def sigmoid(a):
    """σ(a) = 1 / (1 + exp(-a)), computed as (1 + tanh(a/2)) / 2 so that no exp overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def dsigmoid(y):
    """σ'(a) written through its output y = σ(a): y (1 - y)."""
    return y * (1.0 - y)


def dtanh(y):
    """tanh'(a) written through its output y = tanh(a): 1 - y²."""
    return 1.0 - y * y


def relu(a):
    return np.maximum(a, 0.0)


def drelu(y):
    """relu'(a) written through its output y = relu(a): 1 where a > 0, else 0 (as torch)."""
    return (y > 0).astype(y.dtype)


ACTIVATIONS = {"tanh": (np.tanh, dtanh), "relu": (relu, drelu), "sigmoid": (sigmoid, dsigmoid)}


class _Cell:
    """What all cells share: parameters, gradient buffers, the affine maps and the time loop."""

    GATES = 1
    PARAMS = PARAM_NAMES

    def __init__(self, input_size, hidden_size, rng=None):
        """Draw every parameter from U(-1/√H, 1/√H), torch's default; rng is a seed or Generator."""
        rng = np.random.default_rng(rng)
        self.input_size, self.hidden_size = input_size, hidden_size
        rows, k = self.GATES * hidden_size, 1.0 / np.sqrt(hidden_size)
        self.weight_ih = rng.uniform(-k, k, (rows, input_size))
        self.weight_hh = rng.uniform(-k, k, (rows, hidden_size))
        self.bias_ih = rng.uniform(-k, k, rows)
        self.bias_hh = rng.uniform(-k, k, rows)
        self.zero_grad()

    def parameters(self):
        """The parameter arrays by name (the arrays themselves, not copies)."""
        return {name: getattr(self, name) for name in self.PARAMS}

    def zero_grad(self):
        self.grads = {name: np.zeros_like(p) for name, p in self.parameters().items()}

    def _affine(self, x, h):
        """gi = x W_ih^T + b_ih,  gh = h W_hh^T + b_hh."""
        return x @ self.weight_ih.T + self.bias_ih, h @ self.weight_hh.T + self.bias_hh

    def _affine_backward(self, x, h, dgi, dgh):
        """Backward of _affine: accumulate the parameter gradients, return (dx, dh through gh).

        dW_ih += dgi^T x,  db_ih += Σ_batch dgi,  dW_hh += dgh^T h,  db_hh += Σ_batch dgh,
        dx = dgi W_ih,  dh = dgh W_hh.
        """
        self.grads["weight_ih"] += dgi.T @ x
        self.grads["bias_ih"] += dgi.sum(axis=0)
        self.grads["weight_hh"] += dgh.T @ h
        self.grads["bias_hh"] += dgh.sum(axis=0)
        return dgi @ self.weight_ih, dgh @ self.weight_hh

    def forward_sequence(self, xs, *state):
        """The module's forward_sequence(self, xs, *state)."""
        return forward_sequence(self, xs, *state)

    def bptt(self, dout, *args):
        """The module's bptt(self, dout, *args)."""
        return bptt(self, dout, *args)


def forward_sequence(cell, xs, *state):
    """forward_sequence(cell, xs, h0[, c0]): run any cell of this convention over xs (T, B, I).

    Returns (out, h_T, caches), or (out, h_T, c_T, caches) for the LSTM, where out (T, B, H)
    holds the hidden state after each step (out[-1] is h_T) and caches[t] is step t's cache.
    """
    out, caches = [], []
    for x in xs:
        *state, cache = cell.forward(x, *state)  # (h_t[, c_t]) = cell(x_t, h_{t-1}[, c_{t-1}])
        out.append(state[0])  # out[t] = h_t
        caches.append(cache)
    return (np.stack(out), *state, caches)


def bptt(cell, dout, *args):
    """bptt(cell, dout, dh_T[, dc_T], caches): backpropagation through time, for any cell of
    this convention.

    dout (T, B, H) is the gradient of the loss with respect to out[t] at every step; dh_T
    (and dc_T) the gradient arriving at the final state from outside. Going back in time,
    the gradient reaching the hidden state of step t is the local term plus the term that
    step t+1 passes back through the recurrence:

        dh_t = dout[t] + dh_{t+1} ∂h_{t+1}/∂h_t     (and dc_t likewise, for the LSTM)

    The weights are shared across time, so their gradients are summed over all steps.
    Resets ``cell.grads``, then returns (grads, dxs (T, B, I), dh0[, dc0]).
    """
    *dstate, caches = args
    zero_grads(cell)
    dxs = []
    for t in reversed(range(len(caches))):
        dstate[0] = dstate[0] + dout[t]  # dh_t = dout[t] + (what step t+1 passed back)
        dx, *dstate = cell.backward(*dstate, caches[t])  # dx_t, dh_{t-1}[, dc_{t-1}]
        dxs.append(dx)
    return (cell.grads, np.stack(dxs[::-1]), *dstate)


def zero_grads(cell):
    """Set the gradient sums to 0: the cell's own zero_grad() if it has one, else every array
    of ``cell.grads`` in place (so a backward that adds into them keeps working)."""
    if hasattr(cell, "zero_grad"):
        cell.zero_grad()
        return
    for g in cell.grads.values():
        g[...] = 0.0  # dθ = 0


class RNNCell(_Cell):
    """Elman cell, as torch.nn.RNN: h' = φ(a), a = x W_ih^T + b_ih + h W_hh^T + b_hh.

    φ is 'tanh' or 'relu', as in torch, or 'sigmoid' (not in torch; it is here for the
    gradient-flow exercise, since σ' ≤ 1/4 makes gradients vanish fastest).
    """

    def __init__(self, input_size, hidden_size, nonlinearity="tanh", rng=None):
        if nonlinearity not in ACTIVATIONS:
            raise ValueError(
                f"nonlinearity must be one of {sorted(ACTIVATIONS)}, not {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        self._phi, self._dphi = ACTIVATIONS[nonlinearity]
        super().__init__(input_size, hidden_size, rng)

    def forward(self, x, h):
        """h' = φ(x W_ih^T + b_ih + h W_hh^T + b_hh); returns (h', cache)."""
        gi, gh = self._affine(x, h)
        h_new = self._phi(gi + gh)
        return h_new, (x, h, h_new)

    def backward(self, dh, cache):
        """da = dh ⊙ φ'(a); then dx = da W_ih and dh_prev = da W_hh. Returns (dx, dh_prev)."""
        x, h, h_new = cache
        da = dh * self._dphi(h_new)
        return self._affine_backward(x, h, da, da)


class LSTMCell(_Cell):
    """LSTM cell as torch.nn.LSTM, gates in torch's order i, f, g, o."""

    GATES = 4

    def forward(self, x, h, c):
        """Returns (h', c', cache), where

        [a_i | a_f | a_g | a_o] = x W_ih^T + b_ih + h W_hh^T + b_hh
        i = σ(a_i),  f = σ(a_f),  g = tanh(a_g),  o = σ(a_o)
        c' = f ⊙ c + i ⊙ g
        h' = o ⊙ tanh(c')
        """
        gi, gh = self._affine(x, h)
        a_i, a_f, a_g, a_o = np.split(gi + gh, 4, axis=1)
        i, f, g, o = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g), sigmoid(a_o)
        c_new = f * c + i * g
        tanh_c = np.tanh(c_new)
        return o * tanh_c, c_new, (x, h, c, i, f, g, o, tanh_c)

    def backward(self, dh, dc, cache):
        """Given dh' and dc' (the part of dL/dc' that does not go through h'), returns (dx, dh, dc):

        do  = dh' ⊙ tanh(c')
        dc' ← dc' + dh' ⊙ o ⊙ (1 - tanh²(c'))      (all of dL/dc')
        di  = dc' ⊙ g,   df = dc' ⊙ c,   dg = dc' ⊙ i
        da  = [di ⊙ i(1-i) | df ⊙ f(1-f) | dg ⊙ (1-g²) | do ⊙ o(1-o)]
        dx  = da W_ih,   dh = da W_hh,   dc = dc' ⊙ f   (the additive cell path)
        """
        x, h, c, i, f, g, o, tanh_c = cache
        do = dh * tanh_c
        dc = dc + dh * o * dtanh(tanh_c)
        di, df, dg = dc * g, dc * c, dc * i
        da = np.concatenate(
            [di * dsigmoid(i), df * dsigmoid(f), dg * dtanh(g), do * dsigmoid(o)], axis=1
        )
        dx, dh_prev = self._affine_backward(x, h, da, da)
        return dx, dh_prev, dc * f


class GRUCell(_Cell):
    """GRU cell as torch.nn.GRU, gates in torch's order r, z, n (see the module docstring)."""

    GATES = 3

    def forward(self, x, h):
        """Returns (h', cache), where

        [gi_r | gi_z | gi_n] = x W_ih^T + b_ih,   [gh_r | gh_z | gh_n] = h W_hh^T + b_hh
        r = σ(gi_r + gh_r),   z = σ(gi_z + gh_z)
        n = tanh(gi_n + r ⊙ gh_n)
        h' = (1 - z) ⊙ n + z ⊙ h
        """
        gi, gh = self._affine(x, h)
        gi_r, gi_z, gi_n = np.split(gi, 3, axis=1)
        gh_r, gh_z, gh_n = np.split(gh, 3, axis=1)
        r, z = sigmoid(gi_r + gh_r), sigmoid(gi_z + gh_z)
        n = np.tanh(gi_n + r * gh_n)
        return (1.0 - z) * n + z * h, (x, h, r, z, n, gh_n)

    def backward(self, dh, cache):
        """Given dh', returns (dx, dh), with a_n = gi_n + r ⊙ gh_n:

        da_n = dh' ⊙ (1 - z) ⊙ (1 - n²)
        da_r = da_n ⊙ gh_n ⊙ r(1-r)
        da_z = dh' ⊙ (h - n) ⊙ z(1-z)     (h - n, not n - h: torch's z keeps the old state)
        dgi = [da_r | da_z | da_n],   dgh = [da_r | da_z | da_n ⊙ r]
        dx = dgi W_ih,   dh = dgh W_hh + dh' ⊙ z
        """
        x, h, r, z, n, gh_n = cache
        da_n = dh * (1.0 - z) * dtanh(n)
        da_r = da_n * gh_n * dsigmoid(r)
        da_z = dh * (h - n) * dsigmoid(z)
        dgi = np.concatenate([da_r, da_z, da_n], axis=1)
        dgh = np.concatenate([da_r, da_z, da_n * r], axis=1)
        dx, dh_prev = self._affine_backward(x, h, dgi, dgh)
        return dx, dh_prev + dh * z
