"""Readings as a reader hears them: the tones and rhyme groups that real regulated poems give a
character at the places the rules constrain.

The 平水韵 table lists every reading a character ever had, so 行, 长, 衣 and 中 are 平 and 仄
both. Counted by the table, a verse may end 仄 on 行 (read xìng, "conduct"), yet every reader
hears 行 at a line end as háng/xíng, 平: real poems end a 仄 line on it 15 times in 763. So at a
constrained place a character counts only with the readings real poems give it there:

- Places are of two kinds: a line's last character ("end") and the 2nd, 4th and 6th ("inner").
  For each kind, ``heard.tsv`` counts how often a two-tone character stands where the pattern
  asks 平 and where it asks 仄, in the regulated poems of the Tang train split.
- A tone is heard there when it has at least ``SHARE`` (5%) of the character's uses at that kind
  of place. With fewer than ``EVIDENCE`` (5) uses the other kind of place decides; with fewer
  there too, both tones stand, as the table has them.
- A rhyme group is heard when at least ``SHARE`` of the character's uses as a rhyme are in it
  (居 rhymes in 六鱼 189 times and never in 四支); with fewer than ``EVIDENCE`` rhymes, every
  group of the table stands.
- A character with one tone in the table keeps it: the table is right about it.

``python -m poetry_lm.prosody.heard`` rebuilds the table and prints how many poems it read; it
also holds each form's rate of rhyming first lines, which generation follows.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from poetry_lm.prosody.rhyme import PING, ZE, RhymeGroup, groups_of, tones_of

TABLE_PATH = Path(__file__).resolve().parent / "heard.tsv"
SHARE = 0.05  # the least share of a character's uses that makes a reading heard
# what generation asks of a line end: the reading most of the character's uses there have (a
# character poets mostly rhyme on, 长 or 分, sounds like a rhyme at an unrhymed line's end)
WRITE_END_SHARE = 0.75
EVIDENCE = 5  # fewer uses than this at a kind of place: that kind of place says nothing
END, INNER = "end", "inner"
SHAPES = {(4, 5): "五绝", (4, 7): "七绝", (8, 5): "五律", (8, 7): "七律"}


@dataclass
class Usage:
    """What the regulated poems of a corpus do with each character (the table's content)."""

    tones: dict = field(default_factory=lambda: defaultdict(Counter))  # (ch, place) → {tone: n}
    rhymes: dict = field(default_factory=lambda: defaultdict(Counter))  # ch → {group name: n}
    first: Counter = field(default_factory=Counter)  # form → poems whose first line rhymes
    poems: Counter = field(default_factory=Counter)  # form → regulated poems read


def place_tone(form_chars: int, line: int, col: int, key: int, rhymed: bool) -> str | None:
    """The tone a regulated line asks at 0-based ``col``: the last character 平 if the line
    rhymes, else 仄; the 2nd/4th/6th alternate, keyed by the line's place in its couplets
    (key 0: 平起); None where the tone is free."""
    if col == form_chars - 1:
        return PING if rhymed else ZE
    if col in (1, 3, 5):
        flip = ((line + 1) // 2 + (col == 3) + key) % 2  # 对 and 粘: lines 2, 3, 6, 7 reverse
        return ZE if flip else PING
    return None


def rhyme_group(lines: list[str]) -> str | None:
    """The one 平 group every even line's last character is in, or None."""
    common: set[str] | None = None
    for verse in lines[1::2]:
        names = {g.name for g in groups_of(verse[-1]) if g.tone == PING}
        common = names if common is None else common & names
    return common.pop() if common and len(common) == 1 else None


def poem_key(lines: list[str], chars: int, rhymed: list[bool]) -> int | None:
    """The key (0 平起, 1 仄起) that at least 90% of the one-tone inner characters follow."""
    for key in (0, 1):
        kept = total = 0
        for i, verse in enumerate(lines):
            for col in (1, 3, 5)[: (chars - 1) // 2]:
                tones = tones_of(verse[col])
                if len(tones) == 1:
                    total += 1
                    kept += tones == {place_tone(chars, i, col, key, rhymed[i])}
        if total and kept >= 0.9 * total:
            return key
    return None


def count_usage(verses_of_poems) -> Usage:
    """Count, over poems given as lists of verses, what regulated ones do at each place."""
    usage = Usage()
    for lines in verses_of_poems:
        shape = (len(lines), len(lines[0]) if lines else 0)
        group = rhyme_group(lines) if shape in SHAPES else None
        if group is None or any(len(v) != shape[1] for v in lines):
            continue
        form = SHAPES[shape]
        first = group in {g.name for g in groups_of(lines[0][-1])}
        usage.poems[form] += 1
        usage.first[form] += first
        rhymed = [i % 2 == 1 or (i == 0 and first) for i in range(len(lines))]
        for verse in (v for v, r in zip(lines, rhymed) if r):
            usage.rhymes[verse[-1]][group] += 1
        key = poem_key(lines, shape[1], rhymed)
        if key is None:  # not regulated in its tones: it says nothing of them
            continue
        for i, verse in enumerate(lines):
            for col, ch in enumerate(verse):
                tone = place_tone(shape[1], i, col, key, rhymed[i])
                if tone and len(tones_of(ch)) == 2:
                    usage.tones[ch, END if col == len(verse) - 1 else INNER][tone] += 1
    return usage


def write_table(usage: Usage, path: Path = TABLE_PATH, source: str = "") -> None:
    rows = [f"# built by python -m poetry_lm.prosody.heard from {source}"]
    rows += [f"first\t{form}\t{usage.first[form]}\t{usage.poems[form]}" for form in SHAPES.values()]
    for (ch, place), n in sorted(usage.tones.items()):
        rows.append(f"tone\t{ch}\t{place}\t{n[PING]}\t{n[ZE]}")
    for ch, n in sorted(usage.rhymes.items()):
        if len(groups_of(ch)) > 1:  # a one-group character's rhyme is never in doubt
            rows.append(f"rhyme\t{ch}\t" + ",".join(f"{g}:{k}" for g, k in sorted(n.items())))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


@lru_cache(maxsize=1)
def usage() -> Usage:
    """The shipped table (``heard.tsv``)."""
    table = Usage()
    for line in TABLE_PATH.read_text(encoding="utf-8").splitlines():
        kind, *cells = line.split("\t")
        if kind == "first":
            form, first, poems = cells
            table.first[form], table.poems[form] = int(first), int(poems)
        elif kind == "tone":
            ch, place, ping, ze = cells
            table.tones[ch, place].update({PING: int(ping), ZE: int(ze)})
        elif kind == "rhyme":
            ch, counts = cells
            for item in counts.split(","):
                name, n = item.rsplit(":", 1)
                table.rhymes[ch][name] = int(n)
    return table


def heard_tones(ch: str, place: str, share: float = SHARE) -> frozenset[str]:
    """The tones a reader hears ``ch`` in at a place of that kind (``END`` or ``INNER``): those
    with at least ``share`` of its uses there."""
    table = tones_of(ch)
    if len(table) < 2:
        return table
    counts = usage().tones
    other = INNER if place == END else END
    for n in (counts.get((ch, place), Counter()), counts.get((ch, other), Counter())):
        total = n[PING] + n[ZE]
        if total >= EVIDENCE:
            return frozenset(t for t in (PING, ZE) if n[t] >= share * total)
    return table


def heard_groups(ch: str) -> tuple[RhymeGroup, ...]:
    """The rhyme groups a reader hears ``ch`` rhyme in (table order)."""
    groups = groups_of(ch)
    n = usage().rhymes.get(ch, Counter())
    total = sum(n.values())
    if len(groups) < 2 or total < EVIDENCE:
        return groups
    return tuple(g for g in groups if n[g.name] >= SHARE * total)


def first_line_rhyme_rate(form: str) -> float:
    """The share of real poems of ``form`` (五绝 七绝 五律 七律) whose first line rhymes."""
    table = usage()
    return table.first[form] / max(table.poems[form], 1)


def main() -> None:
    from poetry_lm.prosody.check import split_verses
    from poetry_lm.text.corpus import load_corpus

    poems = load_corpus()["train"]
    found = count_usage(split_verses(p.text) for p in poems)
    write_table(found, source=f"the {len(poems)} poems of the Tang train split")
    for form in SHAPES.values():
        rate = found.first[form] / max(found.poems[form], 1)
        print(f"{form}: {found.poems[form]} regulated poems, first line rhymes in {rate:.1%}")
    print(f"written {TABLE_PATH}", file=sys.stderr)


if __name__ == "__main__":
    main()
