"""An automatic 对仗 (parallelism) measure for the middle couplets of 律诗.

Definition (docs/duizhang.md): a poem has the 律诗 shape when it is 8 verses of 5 or of 7
characters, ， after the odd verses and 。 after the even ones. Its middle couplets are verses
3–4 and 5–6, and character k of the even verse stands opposite character k of the odd one.

* **Pair share.** An aligned pair of different characters *stands opposite* when train couplets
  put those two characters opposite each other at least ``MIN_PAIRS`` times and at least
  ``MIN_RATIO`` times as often as chance (pointwise mutual information ≥ log 2). Train couplets
  are every odd–even pair of verses of equal length (5 or 7) in train poems, so the statistics
  come from no test poem. A couplet's score is the share of its positions that stand opposite;
  the figure is the mean over couplets.
* **Tone share.** Of the 2nd and 4th (and 6th) characters, the share where one can be 平 and
  the other 仄 in the 平水韵 table (a character missing from the table counts as not opposed).
* **Control.** The same pair share over mismatched couplets (each odd verse with the even verse
  of the next poem's same couplet): what chance alone scores.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from poetry_lm.prosody.rhyme import PING, ZE, tones_of

MIN_PAIRS = 2  # seen opposite at least this often in train couplets
MIN_RATIO = 2.0  # and at least this many times as often as chance
TONE_POSITIONS = {5: (1, 3), 7: (1, 3, 5)}  # 0-based: the 2nd, 4th (and 6th) characters
_VERSE = re.compile(r"([^，。？！；：、]+)([，。？！；：、])")


def lushi_lines(text: str) -> list[str] | None:
    """The 8 verses of a poem with the 律诗 shape, else None."""
    verses = _VERSE.findall(text)
    if len(verses) != 8 or "".join(v + m for v, m in verses) != text:
        return None
    lengths = {len(v) for v, _ in verses}
    marks = [m for _, m in verses]
    if lengths not in ({5}, {7}) or marks != ["，", "。"] * 4:
        return None
    return [v for v, _ in verses]


def couplets(text: str) -> Iterable[tuple[str, str]]:
    """Every (odd, even) pair of verses of equal length 5 or 7 in a poem, whatever its shape."""
    verses = [v for v, _ in _VERSE.findall(text)]
    for odd, even in zip(verses[0::2], verses[1::2]):
        if len(odd) == len(even) and len(odd) in (5, 7):
            yield odd, even


class PairTable:
    """How often two characters stand opposite each other in couplets, against chance."""

    def __init__(self, texts: Iterable[str]):
        self.pairs: Counter[tuple[str, str]] = Counter()  # unordered: (min, max)
        self.chars: Counter[str] = Counter()  # occurrences at aligned positions
        for text in texts:
            for odd, even in couplets(text):
                for a, b in zip(odd, even):
                    self.pairs[min(a, b), max(a, b)] += 1
                    self.chars[a] += 1
                    self.chars[b] += 1
        self.total = sum(self.pairs.values())  # aligned pairs N

    def ratio(self, a: str, b: str) -> float:
        """Observed / expected count of the unordered pair {a, b}, a ≠ b.

        Expected under independence: N · 2 p(a) p(b) with p(x) = count(x) / 2N, which is
        count(a) · count(b) / 2N.
        """
        expected = self.chars[a] * self.chars[b] / (2 * self.total) if self.total else 0.0
        return self.pairs[min(a, b), max(a, b)] / expected if expected else 0.0

    def opposite(self, a: str, b: str) -> bool:
        return (
            a != b
            and self.pairs[min(a, b), max(a, b)] >= MIN_PAIRS
            and self.ratio(a, b) >= MIN_RATIO
        )

    def pmi(self, a: str, b: str) -> float:
        """log ratio, 0 for a pair never seen (for reports)."""
        r = self.ratio(a, b)
        return math.log(r) if r > 0 else 0.0


def tones_opposed(a: str, b: str) -> bool:
    ta, tb = tones_of(a), tones_of(b)
    return (PING in ta and ZE in tb) or (ZE in ta and PING in tb)


@dataclass
class DuizhangReport:
    poems: int  # poems with the 律诗 shape among those given
    couplets: int  # middle couplets measured (2 per poem)
    pair_share: float  # mean share of aligned positions standing opposite
    margin: float | None  # half-width of the pair share's 95% interval; None under 2 poems
    tone_share: float  # share of 2nd/4th/6th positions with opposed tones
    control: float | None  # pair share of mismatched couplets (chance); None under 2 poems


def middle_couplets(poems: Iterable[str]) -> list[tuple[str, str]]:
    """Verses 3–4 and 5–6 of every poem with the 律诗 shape, in order."""
    out = []
    for text in poems:
        lines = lushi_lines(text)
        if lines:
            out += [(lines[2], lines[3]), (lines[4], lines[5])]
    return out


def couplet_scores(table: PairTable, pairs: Sequence[tuple[str, str]]) -> list[float]:
    """Each couplet's share of aligned positions that stand opposite."""
    return [sum(map(table.opposite, odd, even)) / len(odd) for odd, even in pairs]


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def pair_share(table: PairTable, pairs: Sequence[tuple[str, str]]) -> float:
    return mean(couplet_scores(table, pairs))


def margin_95(scores: Sequence[float], per_poem: int = 2) -> float | None:
    """Half-width of a normal 95% interval for the mean of ``scores``: 1.96 standard errors.
    The ``per_poem`` couplets of one poem are not independent draws, so the poem, not the
    couplet, is the unit: SE = sd(poem means) / sqrt(poems). None for fewer than two poems,
    whose spread cannot be estimated."""
    means = [sum(scores[i : i + per_poem]) / per_poem for i in range(0, len(scores), per_poem)]
    n = len(means)
    if n < 2:
        return None
    mean = sum(means) / n
    variance = sum((m - mean) ** 2 for m in means) / (n - 1)
    return 1.96 * math.sqrt(variance / n)


def measure(table: PairTable, poems: Sequence[str]) -> DuizhangReport:
    """The 对仗 figures of ``poems`` (those with the 律诗 shape) against train statistics."""
    middle = middle_couplets(poems)
    tone_hits = [
        tones_opposed(odd[k], even[k]) for odd, even in middle for k in TONE_POSITIONS[len(odd)]
    ]
    # the control: two couplets of one length apart, so every odd verse meets a stranger
    by_length = {n: [c for c in middle if len(c[0]) == n] for n in (5, 7)}
    mismatched = [
        (group[i][0], group[(i + 2) % len(group)][1])
        for group in by_length.values()
        if len(group) > 2
        for i in range(len(group))
    ]
    scores = couplet_scores(table, middle)
    return DuizhangReport(
        poems=len(middle) // 2,
        couplets=len(middle),
        pair_share=mean(scores),
        margin=margin_95(scores),
        tone_share=mean(tone_hits),
        # a lone poem of its length has no other poem's verse to be mismatched with
        control=pair_share(table, mismatched) if mismatched else None,
    )
