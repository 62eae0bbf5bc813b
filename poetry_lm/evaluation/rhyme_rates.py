"""Rhymes as a reader hears them, measured over a set of poems, real or written:

- ``first_rhymes``: the share of a form's poems whose first line rhymes (its last character is
  in the group the even lines rhyme in);
- ``two_reading_ends``: the share of a form's first lines that do not rhyme and end on a
  character the 平水韵 table reads both 平 and 仄 (行, 长, 衣 …): a reader hears most of them 平,
  so the line sounds like a rhyme that is not there;
- ``unheard_rhymes``: the share of rhyme places whose character is in the poem's group only by a
  reading real poems do not rhyme it in (:func:`poetry_lm.prosody.heard.heard_groups`).

Only regulated poems (:func:`poetry_lm.prosody.check.check_poem`) are counted, by form.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from poetry_lm.prosody.check import EITHER, PoemCheck, check_poem, tone_class
from poetry_lm.prosody.heard import heard_groups


@dataclass
class RhymeRates:
    poems: int = 0
    first_rhymes: int = 0
    unrhymed_firsts: int = 0
    two_reading_ends: int = 0
    rhymes: int = 0
    unheard_rhymes: int = 0

    def add(self, check: PoemCheck) -> bool:
        """Count one checked poem; False (and nothing counted) if it is not regulated."""
        if not check.regulated:
            return False
        self.poems += 1
        first = check.lines[0][-1]
        if check.chars[len(check.lines[0]) - 1].rhyme:
            self.first_rhymes += 1
        else:
            self.unrhymed_firsts += 1
            self.two_reading_ends += tone_class(first) == EITHER
        for c in check.chars:
            if c.rhyme:
                self.rhymes += 1
                self.unheard_rhymes += c.rhyme not in {g.name for g in heard_groups(c.char)}
        return True

    def shares(self) -> dict[str, float]:
        """The three rates, in percent."""
        return {
            "first_rhymes": 100 * self.first_rhymes / max(self.poems, 1),
            "two_reading_ends": 100 * self.two_reading_ends / max(self.poems, 1),
            "unheard_rhymes": 100 * self.unheard_rhymes / max(self.rhymes, 1),
        }


def rhyme_rates(texts) -> dict[str, RhymeRates]:
    """{form: its counts} over the regulated poems among ``texts``."""
    by_form: dict[str, RhymeRates] = defaultdict(RhymeRates)
    for text in texts:
        check = check_poem(text)
        by_form[check.form].add(check)
    by_form.pop("古体", None)
    return dict(by_form)
