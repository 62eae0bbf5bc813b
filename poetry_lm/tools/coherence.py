"""Train and measure the coherence scorer (:mod:`poetry_lm.evaluation.coherence`)::

    python -m poetry_lm.tools.coherence train --out models/coherence.pt --minutes 8 --seed 0
    python -m poetry_lm.tools.coherence measure models/coherence.pt

Training reads the regulated poems (五绝 七绝 五律 七律) of the Tang train split only. Each
step takes ``--batch`` real poems and, for each, a negative made from it
(:mod:`poetry_lm.evaluation.swaps`: one verse swapped for another train poem's at its place,
half of them asked to clash in season or time), and lowers softplus(s(swapped) − s(real)),
each poem against its own swapped version (what selection asks: which of these is whole),
plus the binary cross-entropy of real (1) against swapped (0), which keeps logit 0 a threshold.
The character embedding starts from the language model's (``--model``), cut to E dimensions
by its principal components. Adam, one thread; the same seed and step count train the same
weights (``--minutes`` only caps the time: ``--steps`` fixes the count).

The held-out figures are measured on the valid split: each regulated valid poem against one
negative built from it with valid-split donors only, drawn with a fixed seed
(:data:`MEASURE_SEED`). Accuracy is at logit 0; ROC AUC over all real and swapped poems;
"pairs" the share of poems scored above their own swapped version (ties count half).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np
import torch

from poetry_lm.evaluation.coherence import (
    CoherenceConfig,
    CoherenceModel,
    Scorer,
    encode,
    save_scorer,
)
from poetry_lm.evaluation.swaps import Donors, verse_parts
from poetry_lm.options import corpus_option, model_option
from poetry_lm.text.vocab import CharTable

MEASURE_SEED = 20261208  # the held-out negatives' draw
CLASH_SHARE = 0.5  # negatives asked to clash (only poems with markers can)


def regulated(poems) -> list[str]:
    """The texts of the poems of a regulated form."""
    return [p.text for p in poems if verse_parts(p.text)]


def held_out(texts: list[str], seed: int = MEASURE_SEED, limit: int | None = None):
    """(real texts, their negatives, whether each clashes): one negative per poem of ``texts``
    (the first ``limit``), donors from ``texts`` only, drawn from ``seed``."""
    donors, rng = Donors(texts), np.random.default_rng(seed)
    real, swapped, clash = [], [], []
    for text in texts[:limit]:
        negative = donors.negative(text, rng, rng.random() < CLASH_SHARE)
        if negative is not None:
            real.append(text)
            swapped.append(negative.text)
            clash.append(negative.clash)
    return real, swapped, clash


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC: the chance a random positive scores above a random negative (ties half)."""
    ordered = np.sort(negative)
    below = np.searchsorted(ordered, positive, "left")
    at_or_below = np.searchsorted(ordered, positive, "right")
    return float((below + (at_or_below - below) / 2).sum() / (len(positive) * len(negative)))


def metrics(score, real: list[str], swapped: list[str], clash: list[bool]) -> dict:
    """The held-out figures of a scorer (``score``: texts → logits) on real/swapped pairs."""
    pos, neg = np.array(score(real)), np.array(score(swapped))
    wins = (pos > neg) + 0.5 * (pos == neg)
    clash = np.array(clash)
    return {
        "pairs": len(real),
        "clashing_pairs": int(clash.sum()),
        "accuracy": round(float(((pos > 0).sum() + (neg <= 0).sum()) / (2 * len(real))), 4),
        "roc_auc": round(auc(pos, neg), 4),
        "pair_wins": round(float(wins.mean()), 4),
        "pair_wins_clash": round(float(wins[clash].mean()), 4) if clash.any() else None,
        "pair_wins_plain": round(float(wins[~clash].mean()), 4),
    }


def batched(model: CoherenceModel, table: CharTable, size: int = 256):
    """texts → logits, ``size`` at a time, in eval mode."""

    @torch.inference_mode()
    def score(texts: list[str]) -> list[float]:
        model.eval()
        return [
            x
            for i in range(0, len(texts), size)
            for x in model(*encode(table, texts[i : i + size])).double().tolist()
        ]

    return score


def train_steps(model, table, texts: list[str], options: dict) -> tuple[int, float]:
    """Train ``model`` on ``texts`` for ``options["steps"]`` steps or ``options["minutes"]``,
    whichever ends first → (steps done, seconds)."""
    rng = np.random.default_rng(options["seed"])
    donors = Donors(texts)
    optimizer = torch.optim.Adam(model.parameters(), lr=options["lr"])
    loss_of = torch.nn.BCEWithLogitsLoss()
    start, step, order = time.perf_counter(), 0, np.array([], dtype=int)
    while step < options["steps"] and time.perf_counter() - start < 60 * options["minutes"]:
        if len(order) < options["batch"]:
            order = np.concatenate([order, rng.permutation(len(texts))])
        picked, order = order[: options["batch"]], order[options["batch"] :]
        real = [texts[i] for i in picked]
        swapped = [donors.negative(t, rng, rng.random() < CLASH_SHARE).text for t in real]
        model.train()
        logits = model(*encode(table, real + swapped))
        target = torch.cat([torch.ones(len(real)), torch.zeros(len(swapped))])
        pos, neg = logits[: len(real)], logits[len(real) :]
        # each poem against its own swapped version, and each alone against 0
        loss = torch.nn.functional.softplus(neg - pos).mean() + loss_of(logits, target)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 100 == 0:
            elapsed = time.perf_counter() - start
            click.echo(f"step {step}: loss {loss.item():.4f}, {elapsed:.0f} s", err=True)
    return step, time.perf_counter() - start


def principal_embedding(weight: torch.Tensor, model: CoherenceModel) -> torch.Tensor:
    """The language model's character embedding (V, E_lm) cut to the scorer's E dimensions by
    its principal components (centred, projected on the top E), scaled to unit variance
    overall: what the characters mean, as the model learnt it, to start from."""
    centred = weight - weight.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    projected = centred @ v[: model.config.embed].T  # (V, E)
    return projected / projected.std()


@click.group()
def main():
    """Train and measure the coherence scorer."""


@main.command("train")
@click.option("--out", type=click.Path(dir_okay=False), default="models/coherence.pt",
              show_default=True)  # fmt: skip
@click.option("--minutes", type=click.FloatRange(0, min_open=True), default=8.0,
              show_default=True, help="Stop after this long at the latest.")  # fmt: skip
@click.option("--steps", type=click.IntRange(1), default=10**9, help="Stop after this many.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=2e-3, show_default=True)
@model_option
@corpus_option
def train_command(out, checkpoint, corpus, **options):
    """Train on the train split; measure on the valid split; save with the metrics."""
    from poetry_lm.model.checkpoint import read_checkpoint
    from poetry_lm.text.corpus import load_corpus

    torch.set_num_threads(1)
    torch.manual_seed(options["seed"])
    lm = read_checkpoint(checkpoint)
    table = CharTable(lm["vocab"])
    splits = load_corpus(corpus)
    model = CoherenceModel(CoherenceConfig(vocab_size=len(table)))
    with torch.no_grad():
        model.embed.weight.copy_(principal_embedding(lm["model"]["embedding.weight"], model))
    steps, seconds = train_steps(model, table, regulated(splits["train"]), options)
    # measured as saved: each weight rounded to float16 (save_scorer)
    model.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    found = metrics(batched(model, table), *held_out(regulated(splits["valid"])))
    found.update({**options, "steps": steps, "train_seconds": round(seconds, 1)})
    save_scorer(out, model, table, metrics=found)
    Path(out).with_suffix(".json").write_text(json.dumps(found, indent=1) + "\n")
    click.echo(json.dumps(found))


@main.command("measure")
@click.argument("scorer", type=click.Path(dir_okay=False))
@corpus_option
def measure_command(scorer, corpus):
    """The held-out figures of a trained scorer (the valid split, fixed negatives)."""
    from poetry_lm.text.corpus import load_corpus

    torch.set_num_threads(1)
    loaded = Scorer(scorer)
    found = metrics(
        batched(loaded.model, loaded.table), *held_out(regulated(load_corpus(corpus)["valid"]))
    )
    click.echo(json.dumps(found))


if __name__ == "__main__":
    main()
