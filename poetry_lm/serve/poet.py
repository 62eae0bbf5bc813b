"""What the API shows of a poem beside its text: each character's tone, and where its rhymes
are. (The model's side of the service is the :class:`~poetry_lm.writing.writer.Writer`.)"""

from __future__ import annotations

from poetry_lm.prosody.rhyme import PING, ZE, rhyme_groups, tones_of


def rhyme_positions(lines: list[str], rhyme_first: bool | None, groups=()) -> list[int]:
    """Indices into the joined text of the rhyming characters of a form poem: the last
    character of every second verse, and of the first with ``rhyme_first``, or where it is in
    one of the poem's rhyme ``groups`` (names) when that was left to the poem (None)."""
    if rhyme_first is None:
        rhyme_first = any(lines[0][-2] in g.chars for g in rhyme_groups() if g.name in groups)
    ends = [sum(map(len, lines[: i + 1])) - 2 for i in range(len(lines))]  # before each mark
    return [end for i, end in enumerate(ends) if i % 2 == 1 or (i == 0 and rhyme_first)]


def tone_marks(text: str) -> list[str]:
    """Per character: 平, 仄, 平仄 (read either way) or '' (not in the table, or a mark)."""
    return ["".join(t for t in (PING, ZE) if t in tones_of(ch)) for ch in text]
