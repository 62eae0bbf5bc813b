"""The language model: embedding → custom-parameter LSTM (or GRU, RNN) → softmax over the
vocabulary.

Each recurrent layer declares its own ``nn.Parameter`` tensors in torch's layout (LSTM gates
i, f, g, o; GRU gates r, z, n), so weights copy to and from ``torch.nn.LSTM``/``GRU``/``RNN`` and
the equivalence tests can use torch's modules as independent oracles.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from poetry_lm.model.fused import lstm_sequence
from poetry_lm.settings import SettingError, setting

# per layer: (h, c) for an LSTM, (h,) for a GRU or RNN; each (B, H)
State = list[tuple[torch.Tensor, ...]]
CELLS = ("lstm", "gru", "rnn")
SOFTMAXES = ("full", "adaptive")
DIRECTIONS = ("forward", "backward")
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}


# torch's initialisers that the model's modules call (nn.Embedding, nn.Linear and our own)
INITIALISERS = ("uniform_", "normal_", "kaiming_uniform_")


@contextmanager
def uninitialised():
    """Build models without drawing their initial weights, for a checkpoint to overwrite: the
    weights are left as allocated (``torch.empty``). It skips a needless draw on the CPU and,
    on the meta device, the import of torch's compiler that a draw there costs (about 3 s).
    The training builds outside it, so its draws, and every trained model, are unchanged."""
    saved = {name: getattr(nn.init, name) for name in INITIALISERS}
    try:
        for name in INITIALISERS:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


@dataclass
class ModelConfig:
    """The model's shape; the defaults are the shipped model's (``models/README.md``).

    ``cutoffs`` may stay empty until the output layer is built: the trainer fills them from the
    train split's character frequencies. Raises ``SettingError`` (a ``ValueError``) for a setting
    out of range or at odds with another.
    """

    vocab_size: int
    embed_dim: int = setting(256, "Embedding width: each character becomes a vector this long.")
    hidden_dim: int = setting(768, "Hidden units per recurrent layer.")
    num_layers: int = setting(1, "Recurrent layers, stacked.")
    dropout: float = setting(
        0.25, "Dropout on the embeddings, between layers and before the output layer."
    )
    softmax: str = setting(
        "adaptive",
        "full, or adaptive (torch's AdaptiveLogSoftmaxWithLoss: frequent characters cost less).",
    )
    cutoffs: list[int] = setting(
        [], "Adaptive-softmax cluster boundaries, in frequency-sorted indices."
    )
    tie_weights: bool = setting(False, "Share embedding and output weights (full softmax).")
    cell: str = setting("lstm", "The recurrent cell.")
    activation: str = setting("tanh", "Nonlinearity of the plain RNN cell (cell rnn).")
    # Couplet input: the first layer also reads the embedding of the previous verse's character
    # at the position about to be written (see CoupletTracker). The trainer fills in the
    # vocabulary's verse marks (，。？！；：、) and reset tokens (<pad>, <bos>, <eos>, <sep>).
    couplet_input: bool = setting(
        True, "Also feed the first layer the previous verse's character at the same position."
    )
    verse_marks: list[int] = setting([], "Indices of the marks that end a verse (couplet input).")
    verse_resets: list[int] = setting(
        [], "Indices of the tokens that start afresh (couplet input)."
    )
    direction: str = setting(
        "forward", "forward, or backward: poems read right to left (a reader for reranking)."
    )
    # Regularisation and initialisation after AWD-LSTM (Merity et al. 2017), LSTM only
    forget_bias: float = setting(
        0.0, "Added to the LSTM forget gate's bias at initialisation (AWD-LSTM uses 1)."
    )
    weight_drop: float = setting(
        0.0, "DropConnect probability on the LSTM's recurrent weights in training."
    )
    locked_dropout: bool = setting(
        False, "One dropout mask per sequence for the embeddings and outputs, not one per step."
    )

    @classmethod
    def from_saved(cls, saved: dict) -> ModelConfig:
        """The config a checkpoint stored. Checkpoints from before the couplet input lack the
        field, and their models read without it (the default is now on)."""
        return cls(**{"couplet_input": False, **saved})

    def __post_init__(self):
        if self.softmax not in SOFTMAXES:
            raise SettingError(f"{{softmax}} must be 'full' or 'adaptive', not {self.softmax!r}")
        if self.tie_weights and self.softmax != "full":
            raise SettingError("{tie_weights} needs {softmax} full")
        if self.cell not in CELLS:
            raise SettingError(f"{{cell}} must be one of {', '.join(CELLS)}, not {self.cell!r}")
        if self.activation not in ACTIVATIONS:
            raise SettingError(
                f"{{activation}} must be one of {', '.join(ACTIVATIONS)}, not {self.activation!r}"
            )
        if not 0 <= self.dropout < 1:
            raise SettingError(f"{{dropout}} must be in [0, 1), not {self.dropout}")
        if self.direction not in DIRECTIONS:
            raise SettingError(
                f"{{direction}} must be 'forward' or 'backward', not {self.direction!r}"
            )
        if (self.forget_bias or self.weight_drop) and self.cell != "lstm":
            raise SettingError("{forget_bias} and {weight_drop} need {cell} lstm")
        if not 0 <= self.weight_drop < 1:
            raise SettingError(f"{{weight_drop}} must be in [0, 1), not {self.weight_drop}")


class RecurrentLayer(nn.Module):
    """A recurrent layer with declared parameters in torch's layout, computed step by step.

    ``gates`` blocks of H rows are stacked in ``weight_ih`` (G·H, I) and ``weight_hh`` (G·H, H),
    so weights copy to and from ``torch.nn.RNN``/``GRU``/``LSTM`` unchanged. Subclasses say how
    many gates there are and what one step computes (``cell``).
    """

    gates = 1
    state_size = 1  # tensors in the state: 2 for an LSTM's (h, c)
    weight_drop = 0.0  # DropConnect probability on weight_hh in training (LSTMLayer only)

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        G = self.gates
        self.weight_ih = nn.Parameter(torch.empty(G * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(G * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(G * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(G * hidden_size))
        # keeps pre-activations O(1) at the start, as torch does
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def input_bias(self) -> torch.Tensor:
        """The bias added to W_ih x: both biases, which an LSTM and an RNN only ever sum."""
        return self.bias_ih + self.bias_hh

    def recurrent_bias(self) -> torch.Tensor | None:
        """The bias added to W_hh h (none: it is folded into ``input_bias``)."""
        return None

    def input_gates(self, x: torch.Tensor) -> torch.Tensor:
        """W_ih x + input bias for all steps as one GEMM: (T, B, I) → (T, B, G·H)."""
        return F.linear(x, self.weight_ih, self.input_bias())

    def recurrent_gates(self, h: torch.Tensor) -> torch.Tensor:
        """W_hh h + recurrent bias, the one product per step that cannot be batched over time:
        (B, H) → (B, G·H)."""
        return F.linear(h, self.weight_hh, self.recurrent_bias())

    def cell(
        self, xw_t: torch.Tensor, hw_t: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, ...]:
        """One step from the input and recurrent products (B, G·H) and the state → the new state."""
        raise NotImplementedError

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...], keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """x (T, B, I), state → outputs h_1..h_T (T, B, H), final state.

        ``keep`` (T, B, 1) is 0 at padding: the state is reset to zero there, so a poem padded
        in front is encoded exactly as if it started at step 0 with a zero state.
        """
        outputs = []
        # unbind, not xw[t]: indexing under autograd makes backward much slower
        for t, xw_t in enumerate(self.input_gates(x).unbind(0)):
            state = self.cell(xw_t, self.recurrent_gates(state[0]), state)
            if keep is not None:
                state = tuple(s * keep[t] for s in state)
            outputs.append(state[0])
        return torch.stack(outputs), state


class RNNLayer(RecurrentLayer):
    r"""Elman RNN: :math:`h_t = \varphi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`."""

    def __init__(self, input_size: int, hidden_size: int, activation: str = "tanh"):
        super().__init__(input_size, hidden_size)
        self.activation = ACTIVATIONS[activation]

    def cell(self, xw_t, hw_t, state):
        return (self.activation(xw_t + hw_t),)  # (B, H)


class GRULayer(RecurrentLayer):
    r"""GRU in torch's form (gates r, z, n):

    .. math::
        r_t &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t &= \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
        h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}
    """

    gates = 3

    # b_hn sits inside r ⊙ (·), so each bias stays with its own product
    def input_bias(self):
        return self.bias_ih

    def recurrent_bias(self):
        return self.bias_hh

    def cell(self, xw_t, hw_t, state):
        (h,) = state
        x_r, x_z, x_n = xw_t.chunk(3, dim=1)  # each (B, H)
        h_r, h_z, h_n = hw_t.chunk(3, dim=1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return ((1 - z) * n + z * h,)


class LSTMLayer(RecurrentLayer):
    r"""LSTM (gates i, f, g, o):

    .. math::
        i_t &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t &= \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t &= \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t &= o_t \odot \tanh(c_t)
    """

    gates = 4
    state_size = 2

    def forward(self, x, state, keep=None):
        """As ``RecurrentLayer.forward``, but the input GEMM and the recurrence are one autograd
        node with the hand-written BPTT of ``model/fused.py`` (same numbers, faster)."""
        # weight drop: one mask on W_hh for the whole sequence, so every step sees the same
        # recurrent weights (dropping h itself at each step would disturb the memory)
        weight_hh = self.weight_hh
        if self.weight_drop and self.training:
            weight_hh = F.dropout(weight_hh, self.weight_drop)
        out, h, c = lstm_sequence(x, *state, self.weight_ih, self.input_bias(), weight_hh, keep)
        return out, (h, c)

    def cell(self, xw_t, hw_t, state):
        h, c = state
        gates = xw_t + hw_t  # (B, 4H)
        # one σ over all four gates (g's is unused): at generation's batch of one, calls cost
        # more than arithmetic
        i, f, _, o = torch.sigmoid(gates).chunk(4, dim=1)
        c = torch.addcmul(f * c, i, torch.tanh(gates.chunk(4, dim=1)[2]))
        h = o * torch.tanh(c)
        return h, c


def make_layer(
    cell: str, input_size: int, hidden_size: int, activation: str = "tanh"
) -> RecurrentLayer:
    if cell == "rnn":
        return RNNLayer(input_size, hidden_size, activation)
    return {"lstm": LSTMLayer, "gru": GRULayer}[cell](input_size, hidden_size)


class StackedRNN(nn.Module):
    """Stacked recurrent layers of one cell type with dropout between layers."""

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        activation: str = "tanh",
    ):
        super().__init__()
        self.hidden_size = hidden_size
        self.layers = nn.ModuleList(
            make_layer(cell, input_size if k == 0 else hidden_size, hidden_size, activation)
            for k in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)

    def initial_state(self, batch: int, like: torch.Tensor) -> State:
        zeros = like.new_zeros(batch, self.hidden_size)
        return [(zeros,) * layer.state_size for layer in self.layers]

    def forward(
        self, x: torch.Tensor, state: State | None = None, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """x (T, B, I) → top layer's outputs (T, B, H) and the final state of every layer."""
        state = state or self.initial_state(x.shape[1], x)
        final = []
        for k, layer in enumerate(self.layers):
            if k > 0:
                x = self.dropout(x)
            x, layer_state = layer(x, state[k], keep)
            final.append(layer_state)
        return x, final


CHAR, MARK, RESET = 0, 1, 2  # token kinds for CoupletTracker
Verses = tuple[tuple[int, ...], tuple[int, ...] | None]  # (previous verse, current one so far)


class CoupletTracker:
    """Which character of the previous verse answers the next one, known causally.

    In regulated verse character k of an even line answers character k of the odd line before
    it (对仗). ``step(x_t)`` reads token x_t (B,) and returns, for the token x_{t+1} about to be
    written, the index of the character at the same position of the previous verse, or -1 where
    there is none (first verse, a verse longer than the previous one, a title). A verse is the
    text between two marks; the reset tokens (``<bos>``, ``<eos>``, ``<sep>``, padding) and context
    tokens (>= V, a title) start afresh.

    Each row keeps two verses as tuples of token indices: the previous one, and the current one
    so far. A character extends the current verse; a mark makes it the previous one and starts
    another; a reset forgets both. The next token's counterpart is the previous verse's
    character at the current verse's length. A batch that starts inside a poem (a stream chunk,
    a window) has no previous verse until its first mark: its current verse is unknown (None)
    until then.

    The same object serves training (``sequence`` over a (T, B) batch) and generation (one
    ``step`` per written token; ``select`` follows beam reordering). It is plain Python over each
    row: a step of a few rows costs a few microseconds, where a dozen torch calls on (B,) tensors
    cost tens, and generation takes one step per token.
    """

    def __init__(self, kinds: torch.Tensor, batch: int):
        self.kinds = kinds.tolist()  # (V,) CHAR, MARK or RESET per vocabulary index
        self.device = kinds.device
        self.rows: list[Verses] = [((), None)] * batch

    @staticmethod
    def token_kinds(config: ModelConfig) -> torch.Tensor:
        kinds = torch.full((config.vocab_size,), CHAR, dtype=torch.long)
        kinds[list(config.verse_marks)] = MARK
        kinds[list(config.verse_resets)] = RESET
        return kinds

    def read(self, verses: Verses, x: int) -> tuple[Verses, int]:
        """One row's verses and the token it reads → its verses after it, and the counterpart
        of the next token (-1 for none)."""
        previous, current = verses
        kind = self.kinds[x] if x < len(self.kinds) else RESET  # a context token starts afresh
        if kind == MARK:
            previous, current = current or (), ()
        elif kind == RESET:
            previous, current = (), ()
        elif current is not None:
            current += (x,)
        k = len(previous) if current is None else len(current)  # the next token's place
        return (previous, current), previous[k] if k < len(previous) else -1

    def advance(self, tokens: list[int]) -> list[int]:
        """Every row reads its token → the counterparts of the next tokens, -1 for none."""
        read = [self.read(verses, x) for verses, x in zip(self.rows, tokens, strict=True)]
        self.rows = [verses for verses, _ in read]  # a new list: copies of the tracker share rows
        return [counterpart for _, counterpart in read]

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,) the token just read → counterpart of the next token (B,), -1 for none."""
        return torch.tensor(self.advance(x.tolist()), device=self.device)

    def select(self, rows: torch.Tensor) -> None:
        """Keep rows ``rows`` (B',) of every field, as a beam search reorders its hypotheses."""
        self.rows = [self.rows[i] for i in rows.tolist()]

    def sequence(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (T, B) → counterparts (T, B): row t answers the token that follows tokens[t]."""
        return torch.tensor([self.advance(x) for x in tokens.tolist()], device=tokens.device)


class PoetryLM(nn.Module):
    """Character language model: embedding → recurrent layers → (dropout) → softmax over the
    vocabulary."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        E, H, V = config.embed_dim, config.hidden_dim, config.vocab_size
        self.embedding = nn.Embedding(V, E)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if config.couplet_input:
            # filled in from the vocabulary by the trainer, like the adaptive cutoffs
            if not (config.verse_marks and config.verse_resets):
                raise SettingError("{couplet_input} needs {verse_marks} and {verse_resets}")
            # what the second input reads where the previous verse has no counterpart
            self.no_counterpart = nn.Parameter(nn.init.uniform_(torch.empty(E), -0.1, 0.1))
            self.register_buffer(
                "token_kinds", CoupletTracker.token_kinds(config), persistent=False
            )
        input_size = 2 * E if config.couplet_input else E  # the two embeddings side by side
        self.rnn = StackedRNN(
            config.cell, input_size, H, config.num_layers, config.dropout, config.activation
        )
        for layer in self.rnn.layers:
            layer.weight_drop = config.weight_drop
            with torch.no_grad():  # gates i, f, g, o: the forget gate's block is the second
                layer.bias_ih[H : 2 * H] += config.forget_bias
        self.dropout = nn.Dropout(config.dropout)
        if config.softmax == "adaptive":
            if not config.cutoffs:
                raise SettingError("an adaptive {softmax} needs {cutoffs}")
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(H, V, list(config.cutoffs), div_value=4.0)
        else:
            # tying needs the output layer's input to be E wide: project H → E first
            self.projection = nn.Linear(H, E) if config.tie_weights and H != E else None
            self.output = nn.Linear(E if config.tie_weights else H, V)
            if config.tie_weights:
                self.output.weight = self.embedding.weight

    def forward(
        self, tokens: torch.Tensor, state: State | None = None, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """tokens (T, B) → hidden features (T, B, H) for the output layer, and the state.

        A context token (index + V, a title's) reads as its character (see ``text/vocab.py``).
        With couplet input, the counterparts come from a fresh ``CoupletTracker`` over ``tokens``.
        """
        hidden, state = self.rnn(self.drop(self.embed(tokens)), state, keep)
        return self.drop(hidden), state

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (T, B) → the first layer's input (T, B, E), or (T, B, 2E) with couplet input:
        each token's embedding, and beside it its counterpart's in the previous verse."""
        x = self.embedding(tokens % self.config.vocab_size)  # (T, B, E)
        if self.config.couplet_input:
            counterparts = self.tracker(tokens.shape[1]).sequence(tokens)  # (T, B)
            x = torch.cat([x, self.counterpart_embedding(counterparts)], dim=-1)  # (T, B, 2E)
        return x

    def drop(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout of x (T, B, F): per element, or with ``locked_dropout`` one mask per sequence
        (B, F) for every step, as AWD-LSTM's variational dropout."""
        if not (self.config.locked_dropout and self.training and self.config.dropout):
            return self.dropout(x)
        keep = 1 - self.config.dropout
        mask = x.new_empty(1, *x.shape[1:]).bernoulli_(keep) / keep  # (1, B, F)
        return x * mask

    def tracker(self, batch: int) -> CoupletTracker:
        """A fresh tracker of the previous verse for ``batch`` rows (couplet input only)."""
        return CoupletTracker(self.token_kinds, batch)

    def counterpart_embedding(self, counterparts: torch.Tensor) -> torch.Tensor:
        """counterparts (...,) from a CoupletTracker, -1 for none → the second input (..., E)."""
        found = self.embedding(counterparts.clamp(min=0))
        return torch.where(counterparts[..., None] >= 0, found, self.no_counterpart)

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (N, H) → exact log-probabilities over the whole vocabulary (N, V)."""
        if self.config.softmax == "adaptive":
            return self.adaptive.log_prob(hidden)
        if self.projection is not None:
            hidden = self.projection(hidden)
        return F.log_softmax(self.output(hidden), dim=-1)

    def target_nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """hidden (N, H), targets (N,) → negative log-likelihood of each target (N,), exact."""
        if self.config.softmax == "adaptive":
            return -self.adaptive(hidden, targets).output  # computes only the needed clusters
        if self.projection is not None:
            hidden = self.projection(hidden)
        return F.cross_entropy(self.output(hidden), targets, reduction="none")

    def sequence_nll(
        self, tokens: torch.Tensor, pad: int, state: State | None = None
    ) -> tuple[torch.Tensor, int, State]:
        """tokens (T, B), padding anywhere → (summed NLL of every non-pad token after the
        first position, number of such tokens, state after the last input). Padding is never
        scored and never feeds the state; ``state`` continues a stream from its previous chunk.
        Context tokens (index + V: a title and its ``<sep>``) are read but never scored."""
        nll, scored, state = self.scored_nll(tokens, pad, state)
        return nll.sum(), int(scored.sum()), state

    def row_nll(self, tokens: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
        """As ``sequence_nll``, per row: tokens (T, B) → (summed NLL of each row (B,), scored
        tokens of each row (B,)). For ranking candidates of one batch against each other."""
        nll, scored, _ = self.scored_nll(tokens, pad)
        rows = nll.new_zeros(scored.shape)  # (T-1, B), 0 where nothing is scored
        rows[scored] = nll
        return rows.sum(0), scored.sum(0)

    def scored_nll(
        self, tokens: torch.Tensor, pad: int, state: State | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """tokens (T, B) → (NLL of each scored token (N,), where they stand (T-1, B) bool, the
        state after the last input): what ``sequence_nll`` and ``row_nll`` sum."""
        keep = (tokens != pad).unsqueeze(-1).to(self.embedding.weight.dtype)  # (T, B, 1)
        hidden, state = self(tokens[:-1], state, keep=keep[:-1])
        targets = tokens[1:]
        # (T-1, B): a real poem token after a real token
        scored = (targets != pad) & (tokens[:-1] != pad) & (targets < self.config.vocab_size)
        return self.target_nll(hidden[scored], targets[scored]), scored, state
