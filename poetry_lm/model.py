"""The language model: embedding → custom-parameter LSTM → softmax over the vocabulary.

The LSTM declares its own ``nn.Parameter`` tensors in ``torch.nn.LSTM``'s layout (gates in the
order i, f, g, o), so weights copy between the two and the equivalence test can use torch's
LSTM as an independent oracle.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

State = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (h, c), each (B, H)


@dataclass
class ModelConfig:
    vocab_size: int
    embed_dim: int = 256
    hidden_dim: int = 512
    num_layers: int = 1
    dropout: float = 0.1          # on the embeddings, between layers and before the output layer
    softmax: str = "full"          # "full" or "adaptive" (torch's AdaptiveLogSoftmaxWithLoss)
    cutoffs: list[int] = field(default_factory=list)  # adaptive clusters, in frequency-sorted indices
    tie_weights: bool = False      # output layer shares the embedding matrix (full softmax only)

    def __post_init__(self):
        if self.softmax not in ("full", "adaptive"):
            raise ValueError(f"softmax must be 'full' or 'adaptive', not {self.softmax!r}")
        if self.softmax == "adaptive" and not self.cutoffs:
            raise ValueError("an adaptive softmax needs cutoffs")
        if self.tie_weights and self.softmax != "full":
            raise ValueError("tied weights need the full softmax")


class LSTMLayer(nn.Module):
    r"""One LSTM layer with declared parameters, computed step by step.

    .. math::
        i_t &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t &= \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t &= \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t &= o_t \odot \tanh(c_t)
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        # torch's layout: the four gates' weights stacked along dim 0 as [i; f; g; o]
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)  # keeps gate pre-activations O(1) at the start
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def input_gates(self, x: torch.Tensor) -> torch.Tensor:
        """W_ih x + b_ih + b_hh for all steps as one GEMM: (T, B, I) → (T, B, 4H)."""
        return F.linear(x, self.weight_ih, self.bias_ih + self.bias_hh)

    def cell(self, xw_t: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step from precomputed input gates xw_t (B, 4H) and the state (B, H) each."""
        gates = xw_t + h @ self.weight_hh.T                   # (B, 4H): one recurrent GEMM per step
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
                keep: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (T, B, I), state (h, c) → outputs (T, B, H), final state.

        ``keep`` (T, B, 1) is 0 at padding: the state is reset to zero there, so a poem padded
        in front is encoded exactly as if it started at step 0 with a zero state.
        """
        h, c = state
        outputs = []
        # unbind, not xw[t]: indexing under autograd makes backward much slower
        for t, xw_t in enumerate(self.input_gates(x).unbind(0)):
            h, c = self.cell(xw_t, h, c)
            if keep is not None:
                h, c = h * keep[t], c * keep[t]
            outputs.append(h)
        return torch.stack(outputs), (h, c)


class LSTM(nn.Module):
    """Stacked ``LSTMLayer``s with dropout between layers; parameters named like nn.LSTM's."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.hidden_size = hidden_size
        self.layers = nn.ModuleList(
            LSTMLayer(input_size if k == 0 else hidden_size, hidden_size) for k in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    def initial_state(self, batch: int, like: torch.Tensor) -> State:
        zeros = like.new_zeros(batch, self.hidden_size)
        return [(zeros, zeros) for _ in self.layers]

    def forward(self, x: torch.Tensor, state: State | None = None,
                keep: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """x (T, B, I) → top layer's outputs (T, B, H) and the final state of every layer."""
        state = state or self.initial_state(x.shape[1], x)
        final = []
        for k, layer in enumerate(self.layers):
            if k > 0:
                x = self.dropout(x)
            x, layer_state = layer(x, state[k], keep)
            final.append(layer_state)
        return x, final


class PoetryLM(nn.Module):
    """Character language model: embedding → LSTM → (dropout) → softmax over the vocabulary."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        E, H, V = config.embed_dim, config.hidden_dim, config.vocab_size
        self.embedding = nn.Embedding(V, E)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self.lstm = LSTM(E, H, config.num_layers, config.dropout)
        self.dropout = nn.Dropout(config.dropout)
        if config.softmax == "adaptive":
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(H, V, list(config.cutoffs), div_value=4.0)
        else:
            # tying needs the output layer's input to be E wide: project H → E first
            self.projection = nn.Linear(H, E) if config.tie_weights and H != E else None
            self.output = nn.Linear(E if config.tie_weights else H, V)
            if config.tie_weights:
                self.output.weight = self.embedding.weight

    def forward(self, tokens: torch.Tensor, state: State | None = None,
                keep: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """tokens (T, B) → hidden features (T, B, H) for the output layer, and the state."""
        x = self.dropout(self.embedding(tokens))             # (T, B, E)
        hidden, state = self.lstm(x, state, keep)
        return self.dropout(hidden), state

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

    def sequence_nll(self, tokens: torch.Tensor, pad: int) -> tuple[torch.Tensor, int]:
        """tokens (T, B), padding anywhere → (summed NLL of every non-pad token after the
        first position, number of such tokens). Padding is never scored and never feeds the state."""
        keep = (tokens != pad).unsqueeze(-1).to(self.embedding.weight.dtype)  # (T, B, 1)
        hidden, _ = self(tokens[:-1], keep=keep[:-1])
        targets = tokens[1:]
        scored = (targets != pad) & (tokens[:-1] != pad)       # (T-1, B): a real token after a real token
        nll = self.target_nll(hidden[scored], targets[scored])
        return nll.sum(), int(scored.sum())
