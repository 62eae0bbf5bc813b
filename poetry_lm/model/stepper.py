"""Reading one token at a time, as generation does, with every weight packed once for it.

Writing a poem feeds one token per step to a batch of a few rows, so each step multiplies a
few vectors by every weight matrix: it reads all the weights (~17 MB in float32 at E 256,
H 768) for two FLOPs per weight, which makes its speed the speed of memory, not of
arithmetic. :class:`Int8Linear` keeps each matrix as int8 with one scale per output row,
a quarter of the bytes, packed once for fbgemm's dynamically quantised product (the input
is quantised on the fly, the sums are int32, the result float32). It raises the shipped
model's validation perplexity by less than 0.1% (``evaluate --as-generated``, measured in
``docs/performance.md``). Where fbgemm is missing (not x86), the products stay float32.

fbgemm quantises its input with one scale for the whole batch, from the batch's range, which
would make a poem's numbers depend on the poems decoded beside it. So the inputs it is given
all lie in one fixed range: an LSTM's or GRU's h lies in (-1, 1), and a last row holding +1 and
-1 pins the batch's range to [-1, 1] whatever the other rows are. Each row is then quantised
alike alone or in any batch, and its sums are exact int32: its result is the same, bit for bit.
An input of no fixed range (an adaptive softmax's projected clusters, a tied projection, a ReLU
RNN's h) is multiplied in float32 one row at a time (``torch.bmm`` of 1-row products padded to
whole 64-byte lines, whose rounding does not depend on the batch, unlike one (B, I) GEMM's).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from poetry_lm.model.lm import CoupletTracker, PoetryLM, State

# fbgemm is x86-only, and torch has deprecated the quantized tensors its packing takes: check both
INT8_KERNEL = (
    "fbgemm" in torch.backends.quantized.supported_engines
    and hasattr(torch, "quantize_per_channel")
    and hasattr(torch.ops.quantized, "linear_dynamic")
)


class Int8Linear:
    """x (B, I) → x Wᵀ + b (B, O), W (O, I) read as int8 (float32 without fbgemm or ``int8=False``).

    ``bounded``: every input lies in [-1, 1] (an LSTM's or GRU's h). Without it, and with int8
    asked for, W stays float32 and each row is multiplied on its own. Either way each row's
    result is independent of the other rows of the batch (module doc); ``int8=False`` is the
    plain float32 product, the model's own numbers.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        int8: bool = True,
        bounded: bool = False,
    ):
        weight, bias = weight.detach().float(), None if bias is None else bias.detach().float()
        self.packed, self.rowwise = None, None
        if int8 and INT8_KERNEL and bounded:
            scale = (weight.abs().amax(1) / 127).clamp(min=1e-12).double()  # (O,): row max → ±127
            zero = torch.zeros(len(weight), dtype=torch.long)
            # torch marks quantized tensors deprecated; fbgemm's kernels take only them
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                rows = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(rows, bias)
            self.range_row = weight.new_zeros(1, weight.shape[1])  # (1, I): +1, -1, then 0
            self.range_row[0, :2] = torch.tensor([1.0, -1.0])[: weight.shape[1]]
        elif int8 and INT8_KERNEL:
            # (I', O'): W^T zero-padded to whole 16-float (64-byte) lines. bmm rounds a row whose
            # input or result starts off such a line differently from one that starts on it, so
            # with O = 4821 (the shipped model's last cluster) a row's numbers depended on its
            # place in the batch; on whole lines every row is computed as row 0 is.
            I, O = weight.shape[1], weight.shape[0]
            self.rowwise = F.pad(weight.T, (0, -O % 16, 0, -I % 16)).contiguous()
            self.out_features = O
        self.weight, self.bias = (weight, bias) if self.packed is None else (None, None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.rowwise is not None:  # (B, 1, I') @ (B, I', O'): B products of one row
            if x.shape[1] < len(self.rowwise):
                x = F.pad(x, (0, len(self.rowwise) - x.shape[1]))  # (B, I'): zeros after x
            y = torch.bmm(x[:, None, :], self.rowwise.expand(len(x), -1, -1))
            y = y[:, 0, : self.out_features]  # (B, O)
            return y if self.bias is None else y + self.bias
        if self.packed is None:
            return F.linear(x, self.weight, self.bias)
        # reduce_range: 7-bit inputs, so that no CPU's 16-bit intermediate sums can overflow
        x = torch.cat([x, self.range_row])  # (B + 1, I): the batch's range is [-1, 1]
        return torch.ops.quantized.linear_dynamic.default(x, self.packed, True)[:-1]


@dataclass
class StepState:
    """What a :class:`Stepper` carries from one token to the next, for B rows.

    A step returns a new state and leaves the one it was given as it was, so a state can be
    stepped twice (a test's batch and one of its rows alone).
    """

    # per layer (h, c) of an LSTM, (h,) of a GRU or RNN, the top layer's followed by the
    # W_hh h + b of its next step (see Stepper): each (B, ·)
    layers: State
    # couplet input: each row's previous verse, which gives the next token's counterpart
    couplet: CoupletTracker | None = None

    def select(self, rows: torch.Tensor) -> StepState:
        """Rows ``rows`` (B',) of everything, as a new state: a beam's reordering, one row of a
        batch, or one row repeated (``rows`` all 0)."""
        couplet = None
        if self.couplet is not None:
            couplet = copy.copy(self.couplet)
            couplet.select(rows)
        return StepState([tuple(s[rows] for s in layer) for layer in self.layers], couplet)


class Stepper:
    """Advance a CPU model one token at a time, keeping the state (inference only, no dropout).

    ``int8=False`` keeps float32 weights: the model's own numbers, for tests and comparisons.

    Two things make a step cheaper than the model's own loop:

    - the first layer's input gates are looked up, not computed: a float32 (V, G·H) table of
      W_ih e_v + b for every token v (84 MB at V=6868, H=768), built by one V×E×G·H GEMM
      (~0.1 s at E=256 on one core), turns a product that streams all of W_ih into one row.
      With couplet input the first layer reads [e_v; e_c], c the counterpart from a
      :class:`~poetry_lm.model.lm.CoupletTracker` carried in the state, so W_ih = [W_x | W_c]
      and the gates are the sum of two rows: W_x e_v + b from the token's table, and W_c e_c
      from a (V + 1, G·H) table whose row 0 is W_c times the learned "none" vector (another
      84 MB);
    - the top layer's new h feeds two products, its own recurrence at the next step (W_hh h)
      and the output layer: they are one product of the stacked matrices (each product call
      costs ~15 µs before any arithmetic), and W_hh h waits in the state for the next step,
      whose top layer therefore carries one tensor more than the cell's: (h, c, W_hh h + b).
    """

    def __init__(self, model: PoetryLM, int8: bool = True):
        # a backward model, which this stepper does not read: a clear error
        if model.config.direction == "backward":
            raise ValueError("a backward model scores poems read right to left; it does not write")
        self.model = model
        # a list: slicing a ModuleList builds a module
        self.layers = list(model.rnn.layers)
        *lower, top = self.layers
        config = model.config  # h lies in (-1, 1) for these cells: no per-row scaling
        h_bounded = config.cell != "rnn" or config.activation in ("tanh", "sigmoid")
        with torch.no_grad():
            self.input_gates, self.counterpart_gates = first_layer_tables(model)
            self.input = [
                Int8Linear(layer.weight_ih, layer.input_bias(), int8, h_bounded)
                for layer in self.layers[1:]
            ]
            self.recurrent = [
                Int8Linear(layer.weight_hh, layer.recurrent_bias(), int8, h_bounded)
                for layer in lower
            ]
            # the rows that read the top h: W_hh, then the output layer's first matrices
            rows, biases = [top.weight_hh], [top.recurrent_bias()]
            if model.config.softmax == "adaptive":
                adaptive = model.adaptive
                self.cutoffs = adaptive.cutoffs  # [c_0, …, V]: shortlist, then the clusters
                self.shortlist = self.cutoffs[0]
                rows += [adaptive.head.weight, *(proj.weight for proj, _ in adaptive.tail)]
                biases += [adaptive.head.bias] + [None] * len(adaptive.tail)
                self.tails = [Int8Linear(out.weight, None, int8) for _, out in adaptive.tail]
            else:
                # a full softmax: every token is scored alike
                self.shortlist = model.config.vocab_size
                proj = model.projection  # tied weights with E ≠ H: H → E, then E → V
                first_out = model.output if proj is None else proj
                rows.append(first_out.weight)
                biases.append(first_out.bias)
                self.output = (
                    None
                    if proj is None
                    else Int8Linear(model.output.weight, model.output.bias, int8)
                )
            self.splits = [len(w) for w in rows]  # G·H; c_0 + clusters, H/4, H/16 … or V (or E)
            bias = torch.cat(
                [w.new_zeros(len(w)) if b is None else b for w, b in zip(rows, biases)]
            )
            self.top = Int8Linear(torch.cat(rows), bias, int8, h_bounded)
            self.first_recurrent = bias[: len(top.weight_hh)]  # W_hh h + b at h = 0

    def log_probs(self, first: list[torch.Tensor], only_shortlist: bool = False) -> torch.Tensor:
        """The output layer's first products of the top h (adaptive: head (B, c_0 + clusters) and
        one (B, ·) per cluster; full: logits (B, V) or the tied projection (B, E)) →
        log-probabilities over the vocabulary (B, V), as ``PoetryLM.log_probs`` computes them.
        ``only_shortlist`` leaves the tokens past ``self.shortlist`` at -inf, their clusters
        never computed: for a step whose token is already known to be in the shortlist (an
        adaptive softmax's; a full one scores all)."""
        if self.model.config.softmax == "full":
            (logits,) = first
            return F.log_softmax(logits if self.output is None else self.output(logits), dim=-1)
        # adaptive: log p(w) = log p(cluster of w | h) + log p(w | cluster, h); shortlist: cluster 0
        c = self.cutoffs
        head, *projected = first
        head = F.log_softmax(head, dim=-1)
        if only_shortlist:
            return F.pad(head[:, : c[0]], (0, c[-1] - c[0]), value=float("-inf"))
        clusters = [
            # (B, c_{i+1} - c_i)
            F.log_softmax(output(z.contiguous()), dim=-1).add_(head[:, c[0] + i, None])
            for i, (z, output) in enumerate(zip(projected, self.tails))
        ]
        return torch.cat([head[:, : c[0]], *clusters], dim=1)  # (B, V)

    def initial_state(self, rows: int) -> StepState:
        """The state before any token: zeros, the top layer's W_hh h + b for h = 0, and with
        couplet input a tracker that has read nothing."""
        zeros = self.input_gates.new_zeros(rows, self.layers[0].hidden_size)
        state = [(zeros,) * layer.state_size for layer in self.layers]
        layers = state[:-1] + [(*state[-1], self.first_recurrent.expand(rows, -1))]
        couplet = self.model.tracker(rows) if self.counterpart_gates is not None else None
        return StepState(layers, couplet)

    def first_input_gates(
        self, tokens: torch.Tensor, couplet: CoupletTracker | None, context: bool
    ) -> tuple[torch.Tensor, CoupletTracker | None]:
        """tokens (B,) and the rows' tracker → the first layer's input gates (B, G·H) and the
        tracker past ``tokens`` (a new one: the state's is left as it was)."""
        read_as = tokens % len(self.input_gates) if context else tokens  # a title's as its token
        xw = F.embedding(read_as, self.input_gates)  # (B, G·H)
        if couplet is None:
            return xw, None
        couplet = copy.copy(couplet)  # step() rebinds its rows, never writes into them
        counterparts = couplet.step(tokens)  # (B,), -1 for none: the table's row 0
        return xw + F.embedding(counterparts + 1, self.counterpart_gates), couplet

    def __call__(
        self,
        tokens: torch.Tensor,
        state: StepState | None = None,
        only_shortlist: bool = False,
        context: bool = False,
    ) -> tuple[torch.Tensor, StepState]:
        """tokens (B,) and state (None: the initial state) → log-probabilities of the next token
        (B, V) and the new state. ``only_shortlist``: as in :meth:`log_probs`. ``context``:
        ``tokens`` may hold context tokens (index + V, a title's: ``text/vocab.py``), read as
        the model reads them; without it (a poem's tokens) the step saves a call."""
        state = self.initial_state(len(tokens)) if state is None else state
        xw, couplet = self.first_input_gates(tokens, state.couplet, context)  # (B, G·H)
        layers, new_layers = state.layers, []
        for k, layer in enumerate(self.layers[:-1]):  # the layers below the top
            layer_state = layer.cell(xw, self.recurrent[k](layers[k][0]), layers[k])
            new_layers.append(layer_state)
            xw = self.input[k](layer_state[0])  # the next layer's input gates (B, G·H)
        *top_state, hw = layers[-1]  # hw = W_hh h + b, from the previous step
        top_state = self.layers[-1].cell(xw, hw, tuple(top_state))
        # (B, G·H), then the output layer's
        hw, *first = self.top(top_state[0]).split(self.splits, dim=1)
        new_state = StepState(new_layers + [(*top_state, hw)], couplet)
        return self.log_probs(first, only_shortlist), new_state

    def read(self, tokens: list[int], rows: int) -> tuple[torch.Tensor, StepState]:
        """Read one prefix (bos, title, prime …) once → log-probabilities of the next token and
        the state, each repeated for ``rows`` rows: (rows, V), a state of ``rows`` rows."""
        state = None
        for token in tokens:
            logp, state = self(torch.tensor([token]), state, context=True)
        return logp.expand(rows, -1), state.select(torch.zeros(rows, dtype=torch.long))


def first_layer_tables(model: PoetryLM) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first layer's input gates for every input, looked up instead of computed (Stepper):
    W_x e_v + b for every token v (V, G·H), and with couplet input W_c times the "none" vector
    (row 0) and W_c e_c for every counterpart c (row c + 1): (V + 1, G·H); else None."""
    first, E = model.rnn.layers[0], model.config.embed_dim
    embeddings = model.embedding.weight  # (V, E)
    # W_ih (G·H, E), or (G·H, 2E) = [W_x | W_c] with couplet input
    token_gates = F.linear(embeddings, first.weight_ih[:, :E], first.input_bias())
    if not model.config.couplet_input:
        return token_gates, None
    counterparts = torch.cat([model.no_counterpart[None], embeddings])  # (V + 1, E)
    return token_gates, F.linear(counterparts, first.weight_ih[:, E:])
