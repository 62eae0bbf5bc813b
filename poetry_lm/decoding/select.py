"""Which of a poem's candidates to keep: ``PoemRequest.select``.

- ``score`` (the default): the best mean penalised log-probability of the whole poem
  (:func:`poetry_lm.decoding.loop.best`), or with ``rerank_with`` forward plus backward
  (:mod:`poetry_lm.decoding.rerank`).
- ``worst-verse``: the best worst verse. A verse's fluency is the mean of the model's
  log-probability of each of its characters (its closing mark left out), as generation wrote
  them (``GeneratedPoem.logprobs``); a candidate counts as good as its least fluent verse. The
  poem's mean lets one garbled verse hide behind three easy ones; the minimum does not.
- ``coherence``: the highest logit of the coherence scorer
  (:mod:`poetry_lm.evaluation.coherence`), trained to tell a real poem from the same poem with
  one verse taken from another poem.

Ties go to the first candidate in row order. Each poem's candidates are scored by themselves
(the scorer reads one poem's candidates as one batch), so a poem is the same alone or beside
any others.
"""

from __future__ import annotations

import dataclasses

from poetry_lm.decoding.loop import GeneratedPoem
from poetry_lm.evaluation.coherence import Scorer
from poetry_lm.prosody.masks import VERSE_ENDS


def worst_verse(poem: GeneratedPoem) -> float:
    """The least mean log-probability per character over the poem's verses (marks left out)."""
    means, total, count = [], 0.0, 0
    for ch, lp in zip(poem.text, poem.logprobs):
        if ch in VERSE_ENDS:
            if count:
                means.append(total / count)
            total, count = 0.0, 0
        else:
            total, count = total + lp, count + 1
    if count:
        means.append(total / count)
    return min(means, default=float("-inf"))


def select(
    found: list[list[GeneratedPoem]], how: str, scorer: Scorer | None = None
) -> list[GeneratedPoem]:
    """Of each poem's candidates, the one ``how`` ranks best (``worst-verse`` or ``coherence``,
    the latter by ``scorer``), with ``selected`` set to the figure it was ranked by."""
    picked = []
    for rows in found:
        if how == "worst-verse":
            figures = [worst_verse(poem) for poem in rows]
        elif how == "coherence" and scorer is not None:
            figures = scorer.scores([poem.text for poem in rows])
        else:
            raise ValueError(f"no selection {how!r} (with a scorer: {scorer is not None})")
        i = max(range(len(rows)), key=lambda k: figures[k])  # the first of the best
        picked.append(dataclasses.replace(rows[i], selected=figures[i]))
    return picked
