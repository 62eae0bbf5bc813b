"""Writing poems: batched sampling from the language model, one poem per start text."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import PoetryLM
from .vocab import SPECIALS, CharTable

VERSE_ENDS = "，。？！；"  # a verse (句) ends at one of these


@dataclass
class SampleOptions:
    temperature: float = 1.0
    top_k: int = 0          # keep only the k most likely characters (0: all)
    top_p: float = 1.0      # keep the smallest set whose probability reaches p (1: all)
    greedy: bool = False    # always take the most likely character
    max_len: int = 128      # characters per poem, the start text included


class UnknownCharacterError(ValueError):
    pass


def check_start(table: CharTable, text: str) -> None:
    """A start text the model cannot read is an error naming the first offending character."""
    for ch in text:
        if ch not in table.index or ch in SPECIALS:
            raise UnknownCharacterError(f"the model does not know the character {ch!r}; choose another start")


def filter_logits(logits: torch.Tensor, opts: SampleOptions) -> torch.Tensor:
    """logits (B, V) → logits with everything outside top-k / top-p set to -inf."""
    if opts.top_k:
        kth = logits.topk(min(opts.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if opts.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= opts.top_p  # mass before this token already ≥ p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


class Stepper:
    """Advance the model one token at a time, keeping the state (inference only, no dropout).

    No (V, G·H) table of first-layer input gates is precomputed: building it costs one
    V×E×G·H GEMM (~70 ms at V=6868, E=256, H=512 on one core), more than the per-step input
    GEMMs of a whole batch of poems.
    """

    def __init__(self, model: PoetryLM):
        self.model = model
        self.layers = model.rnn.layers

    def read(self, prefixes: list[list[int]], pad: int) -> tuple[torch.Tensor, list]:
        """Read prefixes of any lengths as one batch, padded in front (padding resets the
        state, so it changes nothing) → log-probabilities of the next token (B, V), state."""
        length = max(len(p) for p in prefixes)
        tokens = torch.tensor([[pad] * (length - len(p)) + p for p in prefixes]).T    # (T, B)
        keep = (tokens != pad).unsqueeze(-1).to(self.model.embedding.weight.dtype)   # (T, B, 1)
        hidden, state = self.model(tokens, keep=keep)
        return self.model.log_probs(hidden[-1]), state

    def __call__(self, tokens: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        """tokens (B,) and state → log-probabilities of the next token (B, V), new state."""
        h = self.model.embedding(tokens)                                # (B, E)
        new_state = []
        for k, layer in enumerate(self.layers):
            layer_state = layer.cell(layer.input_gates(h), state[k])
            new_state.append(layer_state)
            h = layer_state[0]                                          # (B, H)
        return self.model.log_probs(h), new_state


@torch.inference_mode()
def generate(model: PoetryLM, table: CharTable, starts: list[str], opts: SampleOptions,
             generator: torch.Generator | None = None) -> list[str]:
    """One poem per start text (``""`` lets the model choose its first character), decoded as one batch.

    Sampling stops at the end token or ``opts.max_len`` characters; padding, begin and
    ``<unk>`` can never be drawn.
    """
    for text in starts:
        check_start(table, text)
    model.eval()
    step = Stepper(model)
    logp, state = step.read([[table.bos, *table.encode(text)] for text in starts], table.pad)
    banned = torch.tensor([table.pad, table.bos, table.unk])
    poems = [list(text) for text in starts]
    alive = torch.ones(len(starts), dtype=torch.bool)
    while alive.any():
        logp[:, banned] = float("-inf")
        if opts.greedy:
            next_ids = logp.argmax(-1)
        else:
            probs = filter_logits(logp / opts.temperature, opts).softmax(-1)
            next_ids = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        for b in alive.nonzero().flatten().tolist():
            token = int(next_ids[b])
            if token == table.eos:
                alive[b] = False
            else:
                poems[b].append(table.tokens[token])
                alive[b] = len(poems[b]) < opts.max_len
        logp, state = step(next_ids, state)
    return ["".join(p) for p in poems]


def verses(poem: str) -> list[str]:
    """Split a poem after each verse-ending mark: one verse per line."""
    lines, current = [], ""
    for ch in poem:
        current += ch
        if ch in VERSE_ENDS:
            lines.append(current)
            current = ""
    return lines + [current] if current else lines
