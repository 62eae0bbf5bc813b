"""Keywords (主题词): ``--keywords "春 雨 归"`` writes a poem in which every keyword appears as
given, its characters together inside one verse. Coverage is a rule of decoding, kept at every
step like the form's, not a hope.

**The plan.** Each poem keeps a plan for the keywords it has not written yet, in a fixed order:
each at the *latest* place (verse, column) where it and the ones after it still fit, found right
to left. Keywords go one to a verse while they can, by verses spread over those left (in a 七律,
by lines 3, 6 and 8 for three), else as late as they fit; several share a verse only when they
must (packed). A keyword never takes a place whose character is fixed otherwise (an
acrostic's head, a start text) unless that character is its own, and never the rhyme of a
rhyming verse unless its last character may rhyme there (in the rhyme group, not used yet: no
重韵). That is only known in the verse being written: a later verse's rhyme is never counted on.

**Bonus, then deadline.** Where a keyword may begin at the next character and the others still
fit after it, its first character gains ``KEYWORD_BONUS - log R`` nats, R being the places left
before its latest one, and pays no repetition penalty (one keyword to a verse while the plan is
spread): the model places it where it likes it, and more readily as its places run out. Once
begun, its other characters are forced in turn. When the plan's first keyword must begin at
the next character, it is forced there; with ``tones`` at the latest place of its verse where it
fits the 平仄, which it overrides only where no such place is left (the poem records that).

**Free poems.** Their number of verses is not fixed. The plan takes the fewest couplets that hold
the keywords one to a verse, counting those written so far, within the couplets ``max_len``
leaves room for; the poem may not end while a keyword is missing; the first verse may end only
at a length with which the remaining keywords still fit the verses after it.

A keyword already in the start text, or one the model writes anywhere on its own, is covered.

This module reads and checks the keywords; :mod:`poetry_lm.prosody.keyword_plan` plans where they
go, and :mod:`poetry_lm.prosody.coverage` keeps the plan at each step.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from poetry_lm.settings import SettingError
from poetry_lm.text.corpus import is_ideograph

# nats added to a keyword's first character where it may begin, less log R where R places are
# left before its latest place (docs/decoding.md measures the choice)
KEYWORD_BONUS = 6.0
MAX_KEYWORDS = 6  # per poem (every order of them is tried before giving up: 720 at most)
MAX_KEYWORD_CHARS = 12  # a free poem's longest verse
SEPARATORS = re.compile(r"[\s,，、]+")


class KeywordError(SettingError):
    """Keywords that are empty, not characters, or that cannot all fit the poem asked for.

    A SettingError, so that the command line and the API each name the setting at fault in
    their own words: ``fields[0]`` is ``keywords``, unless the message names another as a
    placeholder (``{max_len}``, where the poem's length leaves no room).

    ``max_len``: where a free poem's ``max_len`` is what binds, that value; the message then
    ends by asking for a larger one, and ``reason`` is the message without that advice
    (:func:`poetry_lm.prosody.forms.check_keywords` replaces it by the least that fits)."""

    def __init__(self, reason: str, max_len: int | None = None):
        self.reason, self.max_len = reason, max_len
        advice = "" if max_len is None else f"; give a larger {{max_len}} than {max_len}"
        super().__init__(reason + advice)
        self.fields = self.fields or ["keywords"]


def check_keyword_text(text: str) -> str:
    """A keyword text as given (a ``--keywords`` value, an element of the API's ``keywords``)
    → itself; raises KeywordError where it holds no keyword (empty, or blanks and separators
    only): a slip to point out, not a wish for no keywords."""
    if not any(SEPARATORS.split(text)):
        raise KeywordError(f"a keyword is empty ({text!r}); each must hold Chinese characters")
    return text


def split_keywords(values: str | Iterable[str]) -> list[str]:
    """``"春 雨,归、明月"`` (or several such strings) → ``["春", "雨", "归", "明月"]``: split on
    whitespace, commas and 、. Raises KeywordError for a string that holds no keyword."""
    texts = [values] if isinstance(values, str) else list(values)
    return [k for text in texts for k in SEPARATORS.split(check_keyword_text(text)) if k]


def check_keyword_limits(keywords: Iterable[str]) -> list[str]:
    """Keywords (split) without repeats; raises KeywordError for one longer than
    MAX_KEYWORD_CHARS, or for more than MAX_KEYWORDS."""
    keywords = list(dict.fromkeys(keywords))
    for k in keywords:
        if len(k) > MAX_KEYWORD_CHARS:
            shown = repr(k).replace("{", "{{").replace("}", "}}")  # text, not a placeholder
            raise KeywordError(
                f"the keyword {shown} has {len(k)} characters; a verse holds {MAX_KEYWORD_CHARS}"
            )
    if len(keywords) > MAX_KEYWORDS:
        raise KeywordError(f"at most {MAX_KEYWORDS} keywords, not {len(keywords)}")
    return keywords


def clean_keywords(keywords: Iterable[str]) -> tuple[str, ...]:
    """Keywords (already read by the text rule) checked and tidied: repeats, and keywords inside
    another (writing 春风 writes 春), are dropped. Raises KeywordError for one that is empty, not
    all Chinese characters or longer than MAX_KEYWORD_CHARS, or for more than MAX_KEYWORDS."""
    keywords = list(keywords)
    for k in keywords:
        if not k or not all(map(is_ideograph, k)):
            shown = repr(k).replace("{", "{{").replace("}", "}}")  # text, not a placeholder
            raise KeywordError(f"the keyword {shown} must be Chinese characters only")
    keywords = check_keyword_limits(keywords)
    return tuple(k for k in keywords if not any(k != o and k in o for o in keywords))
