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
    # Read each start text separately (they differ in length), then decode all poems together.
    states, last_hidden = [], []
    for text in starts:
        prefix = torch.tensor([table.bos, *table.encode(text)]).unsqueeze(1)   # (T, 1)
        hidden, state = model(prefix)
        states.append(state)
        last_hidden.append(hidden[-1])                                      # (1, H)
    state = [tuple(torch.cat(parts) for parts in zip(*layer)) for layer in zip(*states)]  # per layer, (B, H) each
    hidden = torch.cat(last_hidden)                                          # (B, H)
    banned = torch.tensor([table.pad, table.bos, table.unk])
    poems = [list(text) for text in starts]
    alive = torch.ones(len(starts), dtype=torch.bool)
    while alive.any():
        logits = model.log_probs(hidden)                                     # (B, V)
        logits[:, banned] = float("-inf")
        if opts.greedy:
            next_ids = logits.argmax(-1)
        else:
            probs = filter_logits(logits / opts.temperature, opts).softmax(-1)
            next_ids = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        for b in alive.nonzero().flatten().tolist():
            token = int(next_ids[b])
            if token == table.eos:
                alive[b] = False
            else:
                poems[b].append(table.tokens[token])
                alive[b] = len(poems[b]) < opts.max_len
        out, state = model(next_ids.unsqueeze(0), state)
        hidden = out[0]
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
