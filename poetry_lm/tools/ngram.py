"""A character n-gram baseline with interpolated Kneser-Ney smoothing.

    python -m poetry_lm ngram --order 5            # valid and test perplexity

It scores exactly what ``poetry_lm.evaluation.perplexity`` scores — every token after each
poem's begin token, end token included, over the vocabulary of the shipped model (or
``--model``) — so its perplexity sits beside the LSTM's on the same definition. The history of
a poem's first characters is padded with begin tokens.

Interpolated modified Kneser-Ney (Chen & Goodman 1998): for a history h of length k with
shortened history h' (its last k − 1 tokens),

    P(w | h) = max(c(h w) − D(c(h w)), 0) / c(h·) + γ(h) · P(w | h'),
    γ(h) = (D₁ N₁(h ·) + D₂ N₂(h ·) + D₃₊ N₃₊(h ·)) / c(h·)

where at the top order c counts occurrences, at lower orders c(h w) = N₁₊(· h w) counts the
distinct tokens seen before h w (continuation counts), Nᵢ(h ·) counts the tokens seen after h
with count i (3+: three or more), the discounts per order are estimated from the count-of-counts,
and below the unigram lies the uniform distribution over the V predictable tokens. A
history never seen passes all its mass to the shorter one.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import click

from poetry_lm.errors import run_or_exit
from poetry_lm.options import model_option


class KneserNey:
    def __init__(self, poems: list[list[int]], order: int, bos: int, vocab_size: int):
        self.order, self.bos, self.vocab_size = order, bos, vocab_size
        top: Counter = Counter()
        for ids in poems:  # ids: begin, characters, end
            padded = [bos] * (order - 1) + ids[1:]
            for i in range(order - 1, len(padded)):
                top[tuple(padded[i - order + 1 : i + 1])] += 1
        # counts[k]: n-grams of length k + 1 (top order: occurrences; lower: continuation counts)
        self.counts: list[Counter] = [Counter() for _ in range(order)]
        self.counts[-1] = top
        for k in range(order - 1, 0, -1):
            for gram in self.counts[k]:
                self.counts[k - 1][gram[1:]] += 1
        # per order, the discounts D₁, D₂, D₃₊ for n-grams counted once, twice, three times or more,
        # from the numbers nᵢ of n-grams counted i times: Y = n₁/(n₁+2n₂), Dᵢ = i − (i+1)·Y·nᵢ₊₁/nᵢ
        self.discounts = []
        for counts in self.counts:
            n = Counter(c for c in counts.values() if c <= 4)
            y = n[1] / (n[1] + 2 * n[2]) if n[1] else 0.5
            self.discounts.append(
                (
                    0.0,
                    *(
                        max(i - (i + 1) * y * n[i + 1] / n[i], 0.0) if n[i] else y
                        for i in (1, 2, 3)
                    ),
                )
            )
        # per history: total count, and how many continuations were counted once, twice, 3+ times
        self.totals: list[dict] = []
        self.types: list[dict] = []
        for counts in self.counts:
            total, types = defaultdict(int), defaultdict(lambda: [0, 0, 0, 0])
            for gram, c in counts.items():
                total[gram[:-1]] += c
                types[gram[:-1]][min(c, 3)] += 1
            self.totals.append(total)
            self.types.append(types)

    def prob(self, history: tuple[int, ...], w: int) -> float:
        p = 1.0 / self.vocab_size
        for k in range(self.order):  # unigram (k = 0) up to the full history
            h = history[len(history) - k :] if k else ()
            total = self.totals[k].get(h, 0)
            if total:
                d, c = self.discounts[k], self.counts[k].get(h + (w,), 0)
                left = sum(d[i] * self.types[k][h][i] for i in (1, 2, 3))  # mass the discounts free
                p = (max(c - d[min(c, 3)], 0) + left * p) / total
        return p

    def nll(self, ids: list[int]) -> tuple[float, int]:
        """Summed −log p of every token after the begin token, and their number."""
        padded = [self.bos] * (self.order - 1) + ids[1:]
        total = 0.0
        for i in range(self.order - 1, len(padded)):
            total -= math.log(self.prob(tuple(padded[i - self.order + 1 : i]), padded[i]))
        return total, len(ids) - 1


@click.command()
@click.option("--order", type=click.IntRange(1, 9), default=5, show_default=True)
@model_option  # whose vocabulary to use
@click.option(
    "--split",
    "splits",
    multiple=True,
    type=click.Choice(["valid", "test"]),
    default=["valid", "test"],
)
def main(order: int, checkpoint: str, splits: tuple[str, ...]) -> None:
    """Train a Kneser-Ney n-gram model on the train split, with the vocabulary of --model, and print
    its perplexity."""
    from poetry_lm.model.checkpoint import read_checkpoint
    from poetry_lm.text.corpus import load_corpus
    from poetry_lm.text.vocab import CharTable

    table = CharTable(run_or_exit(read_checkpoint, checkpoint)["vocab"])
    corpus = run_or_exit(load_corpus)
    encode = lambda split: [table.encode_poem(p.text) for p in corpus[split]]  # noqa: E731
    # every token but <pad> and <bos> can be predicted
    model = KneserNey(encode("train"), order, table.bos, len(table) - 2)
    for split in splits:
        nll, n = map(sum, zip(*(model.nll(ids) for ids in encode(split))))
        click.echo(
            f"{order}-gram Kneser-Ney, {split} split: perplexity {math.exp(nll / n):.2f} "
            f"over {n} tokens"
        )


if __name__ == "__main__":
    main()
