"""How Tang-like is a poem: the model's surprisal at each of its characters, and its perplexity.

Totals and perplexity come from :func:`poetry_lm.evaluation.perplexity.perplexity` (one
definition everywhere: every token after the begin token, the end token included); the
per-token surprisal is the model's own ``target_nll`` of each token, so the two always add up.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from poetry_lm.evaluation.perplexity import PerplexityReport, perplexity
from poetry_lm.model.lm import PoetryLM
from poetry_lm.text.vocab import EOS, CharTable


@dataclass
class PoemScore:
    text: str
    surprisal: list[tuple[str, float]]  # (token, nats) for each character, then the end token
    report: PerplexityReport

    def most_surprising(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.surprisal, key=lambda pair: -pair[1])[:k]


@torch.inference_mode()
def score_poem(model: PoetryLM, table: CharTable, text: str) -> PoemScore:
    """Surprisal (negative log-probability, nats) of each token of ``text`` after the begin
    token."""
    model.eval()
    ids = torch.tensor(table.encode_poem(text))
    hidden, _ = model(ids[:-1, None])  # (T-1, 1, H)
    nll = model.target_nll(hidden[:, 0], ids[1:])  # (T-1,)
    return PoemScore(text, list(zip([*text, EOS], nll.tolist())), perplexity(model, table, [text]))
