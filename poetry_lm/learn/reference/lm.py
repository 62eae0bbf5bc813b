"""A character language model in numpy: embedding → recurrent cell → output layer, trained by SGD
with truncated backpropagation through time.

This is the whole course exercise in one file (a numpy RNN language model, truncated BPTT, an SGD
loop), built from the reference cells and output layer of this package:

    x_t = E[token_t]              embedding rows, E (K, D)
    h_t = cell(x_t, h_{t−1})      RNNCell, LSTMCell, GRUCell or CourseGRUCell
    o_t = h_t Vᵀ + c              OutputLayer
    L   = mean over positions of −log softmax(o_t)[token_{t+1}]

Training reads a long stream of tokens (the poems laid end to end) in ``batch`` columns, ``k``
steps at a time. The state is carried from one chunk to the next, but the gradient is not:
each chunk's BPTT stops after τ steps (dh_T = 0 at its end), which is what "truncated BPTT of k
steps" means. tests/learn/test_numpy_lm.py checks the loss and every gradient against the torch
model (poetry_lm.model.lm.PoetryLM) holding the same weights.
"""

import math
import time

import numpy as np

from .cells import GRUCell, LSTMCell, RNNCell
from .course_gru import CourseGRUCell
from .output import OutputLayer, softmax_cross_entropy

CELL_CLASSES = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell, "course-gru": CourseGRUCell}


class NumpyLM:
    """The language model above. Parameters by name: ``embedding``, ``cell.<name>``, ``V``, ``c``.

    Initialised like PoetryLM: the embedding from U(−0.1, 0.1), the cell and the output layer
    from U(−1/√H, 1/√H). Raises ValueError for an unknown ``cell``.
    """

    def __init__(self, vocab_size, embed_dim, hidden_dim, cell="rnn", rng=0):
        if cell not in CELL_CLASSES:
            raise ValueError(f"cell must be one of {', '.join(CELL_CLASSES)}, not {cell!r}")
        rng = np.random.default_rng(rng)
        self.embedding = rng.uniform(-0.1, 0.1, (vocab_size, embed_dim))
        self.cell = CELL_CLASSES[cell](embed_dim, hidden_dim, rng=rng)
        self.output = OutputLayer(hidden_dim, vocab_size, rng)
        self.n_states = 2 if isinstance(self.cell, LSTMCell) else 1

    def parameters(self):
        cell = {f"cell.{name}": p for name, p in self.cell.parameters().items()}
        return {"embedding": self.embedding, **cell, **self.output.parameters()}

    def initial_state(self, batch):
        return tuple(np.zeros((batch, self.cell.hidden_size)) for _ in range(self.n_states))

    def loss_and_grads(self, inputs, targets, state):
        """inputs, targets (T, B) integer arrays → (mean NLL, grads by parameter name, new state).

        The BPTT runs over these T steps only; ``state`` enters as a constant (truncation).
        """
        T, B = inputs.shape
        x = self.embedding[inputs]  # (T, B, D)
        out, *final, caches = self.cell.forward_sequence(x, *state)  # out (T, B, H)
        h = out.reshape(T * B, -1)
        loss, dlogits = softmax_cross_entropy(self.output.forward(h), targets.reshape(-1))
        grads, dh = self.output.backward(h, dlogits)
        no_grad_from_later_chunks = [np.zeros_like(s) for s in final]
        cell_grads, dx, *_ = self.cell.bptt(
            dh.reshape(out.shape), *no_grad_from_later_chunks, caches
        )
        dembedding = np.zeros_like(self.embedding)
        np.add.at(dembedding, inputs, dx)  # a row used twice gets both gradients
        grads = {
            "embedding": dembedding,
            **{f"cell.{name}": g.copy() for name, g in cell_grads.items()},
            **grads,
        }
        return loss, grads, tuple(final)

    def nll(self, inputs, targets, state):
        """Forward only: (summed NLL of the targets, new state)."""
        T, B = inputs.shape
        out, *final, _ = self.cell.forward_sequence(self.embedding[inputs], *state)
        loss, _ = softmax_cross_entropy(
            self.output.forward(out.reshape(T * B, -1)), targets.ravel()
        )
        return loss * T * B, tuple(final)


def stream_columns(poems, batch):
    """Poems (lists of token ids, each begin … end) laid end to end, cut into ``batch`` equal
    columns → (L, batch) array, L = total tokens // batch (the tail that does not fit is dropped).
    Raises ValueError if there are fewer tokens than columns."""
    stream = np.concatenate([np.asarray(p) for p in poems])
    length = len(stream) // batch
    if length < 2:
        raise ValueError(f"{len(stream)} tokens are too few for {batch} columns")
    return stream[: length * batch].reshape(batch, length).T


def chunks(columns, k):
    """(inputs, targets) pairs of at most k steps: targets are the inputs shifted by one."""
    for start in range(0, len(columns) - 1, k):
        stop = min(start + k, len(columns) - 1)
        yield columns[start:stop], columns[start + 1 : stop + 1]


def perplexity(model, columns, k):
    """exp(mean NLL) of every next token in ``columns`` (L, B), read k steps at a time."""
    state, total, count = model.initial_state(columns.shape[1]), 0.0, 0
    for inputs, targets in chunks(columns, k):
        nll, state = model.nll(inputs, targets, state)
        total, count = total + nll, count + targets.size
    return math.exp(total / count)


def sgd_step(model, grads, lr, clip):
    """θ ← θ − lr · g, after scaling every gradient down so that their joint norm is ≤ clip.
    Returns the norm before clipping."""
    norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    scale = lr * min(1.0, clip / max(norm, 1e-12))
    for name, p in model.parameters().items():
        p -= scale * grads[name]  # in place: the model's arrays themselves
    return norm


def train(model, train_columns, valid_columns, k=20, lr=1.0, clip=5.0, epochs=5, log=print):
    """SGD with truncated BPTT of τ steps. Returns one dict per epoch (and one for epoch 0,
    before training): train loss (mean over the epoch's chunks), valid perplexity, seconds."""
    start = time.perf_counter()
    history = [{"epoch": 0, "valid_ppl": perplexity(model, valid_columns, k), "seconds": 0.0}]
    log(f"epoch 0: valid perplexity {history[0]['valid_ppl']:.1f}")
    for epoch in range(1, epochs + 1):
        state, losses = model.initial_state(train_columns.shape[1]), []
        for inputs, targets in chunks(train_columns, k):
            loss, grads, state = model.loss_and_grads(inputs, targets, state)
            sgd_step(model, grads, lr, clip)
            losses.append(loss)
        row = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "valid_ppl": perplexity(model, valid_columns, k),
            "seconds": time.perf_counter() - start,
        }
        history.append(row)
        log(
            f"epoch {epoch}: train loss {row['train_loss']:.3f}, "
            f"valid perplexity {row['valid_ppl']:.1f} ({row['seconds']:.1f} s)"
        )
    return history
