"""The output layer of a language model in numpy: logits, softmax and cross-entropy, by hand.

In the course's symbols (see docs/bptt.md, "The output layer"): o = V h + c, ŷ = softmax(o),
L = −Σ y log ŷ with y the one-hot target. With rows as batch items, for N rows at once:

    o  = h Vᵀ + c                         h (N, H), V (K, H), c (K,), o (N, K)
    L  = (1/N) Σ_n −log ŷ[n, target_n]    the mean over the N rows
    do = (ŷ − y) / N                      softmax and cross-entropy together
    dV = doᵀ h,   dc = Σ_n do[n],   dh = do V

No torch here: tests/learn/test_numpy_lm.py checks it against torch.nn.functional.cross_entropy.
"""

import numpy as np


def log_softmax(logits):
    """logits (N, K) → log ŷ (N, K), shifted by each row's maximum so that exp cannot overflow."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy(logits, targets):
    """Mean cross-entropy of the rows of ``logits`` (N, K) against integer ``targets`` (N,).

    Returns (loss, dlogits): the mean negative log-likelihood in nats and its gradient
    (ŷ − y) / N, shape (N, K). Raises ValueError if a target is outside 0 … K − 1.
    """
    n, k = logits.shape
    if targets.shape != (n,) or targets.min() < 0 or targets.max() >= k:
        raise ValueError(f"targets must be {n} integers in 0 … {k - 1}")
    logp = log_softmax(logits)
    rows = np.arange(n)
    loss = -logp[rows, targets].mean()
    dlogits = np.exp(logp)  # ŷ
    dlogits[rows, targets] -= 1.0  # ŷ − y
    return loss, dlogits / n


class OutputLayer:
    """o = h Vᵀ + c: the hidden state to one logit per vocabulary entry (the course's V and c).

    Initialised as torch.nn.Linear: V and c from U(−1/√H, 1/√H), so weights copy over one to one
    from ``PoetryLM.output`` (``weight`` is V, ``bias`` is c).
    """

    def __init__(self, hidden_size, vocab_size, rng=None):
        rng = np.random.default_rng(rng)
        k = 1.0 / np.sqrt(hidden_size)
        self.V = rng.uniform(-k, k, (vocab_size, hidden_size))
        self.c = rng.uniform(-k, k, vocab_size)

    def parameters(self):
        return {"V": self.V, "c": self.c}

    def forward(self, h):
        """h (N, H) → logits (N, K)."""
        return h @ self.V.T + self.c

    def backward(self, h, dlogits):
        """Returns ({"V": dV, "c": dc}, dh) for the rows h (N, H) and their dlogits (N, K)."""
        return {"V": dlogits.T @ h, "c": dlogits.sum(axis=0)}, dlogits @ self.V
