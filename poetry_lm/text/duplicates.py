"""Near-duplicate poems, grouped so that a whole group lands in one split.

The 全唐诗 files one poem several times: under two titles or two collections (李白's 上之回 sits
both among his poems and among the 鼓吹曲辞), and often in variant readings that differ in a
character or two. Two poems are *near duplicates* when, punctuation stripped,

1. their texts are identical (this covers texts that differ only in punctuation, and the same
   text under two titles or in two collections: titles and authors are never compared), or
2. their texts have the same length and differ in at most ``MAX_DIFF`` (2) positions, or
3. they share at least ``MIN_SHARED_VERSES`` (2) verses, and at least half of the shorter poem's
   verses (a verse is the text between two marks): a poem and an excerpt of it, the same poem
   with a couplet more, or a variant too far apart for rule 2.

Groups are the connected components of that relation (union-find), so a chain of variants
A ~ B ~ C is one group even when A and C differ in four characters.

Rule 2 is found without comparing every pair by a blocking key: cut a text into
``MAX_DIFF + 1`` parts; two texts with at most ``MAX_DIFF`` differences agree on at least one
whole part (pigeonhole), so only texts that share (length, part number, part) are compared.
Rule 3 counts shared verses through an index from verse to poems; a verse found in more than
``COMMON_VERSE`` poems is a stock phrase, not evidence of one poem, and is left out.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

MAX_DIFF = 2  # differing characters that still make two same-length texts one poem
MIN_SHARED_VERSES = 2  # and at least half of the shorter poem's verses
COMMON_VERSE = 10  # a verse in more poems than this is a stock phrase, ignored by rule 3
PUNCTUATION = "，。？！；：、"
_NO_PUNCTUATION = str.maketrans("", "", PUNCTUATION)


def strip_punctuation(text: str) -> str:
    return text.translate(_NO_PUNCTUATION)


class UnionFind:
    """Disjoint sets over 0..n-1 with path halving; ``find`` gives a set's representative."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving keeps the trees flat
            i = parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)  # the smaller index represents the set


def differences(a: str, b: str, limit: int = MAX_DIFF) -> int:
    """Positions at which same-length ``a`` and ``b`` differ, counted up to ``limit + 1``."""
    count = 0
    for x, y in zip(a, b):
        if x != y:
            count += 1
            if count > limit:
                break
    return count


def _parts(text: str, k: int) -> list[str]:
    """``text`` cut into ``k`` consecutive parts of near-equal length (some empty if short)."""
    n = len(text)
    return [text[n * i // k : n * (i + 1) // k] for i in range(k)]


def near_duplicate_groups(texts: Sequence[str], max_diff: int = MAX_DIFF) -> list[int]:
    """For each text, the index of the first text of its near-duplicate group.

    ``texts[i]`` and ``texts[j]`` get the same representative exactly when a chain of pairs
    related by rules 1–3 (see the module docstring) joins them. About 2 s on the corpus.
    """
    stripped = [strip_punctuation(t) for t in texts]
    groups = UnionFind(len(texts))
    blocks: dict[tuple[int, int, str], list[int]] = defaultdict(list)
    for i, s in enumerate(stripped):
        for k, part in enumerate(_parts(s, max_diff + 1)):
            blocks[len(s), k, part].append(i)
    for members in blocks.values():
        for a in range(len(members)):
            i = members[a]
            for j in members[a + 1 :]:
                if groups.find(i) != groups.find(j) and (
                    differences(stripped[i], stripped[j], max_diff) <= max_diff
                ):
                    groups.union(i, j)
    _join_shared_verses(texts, groups)
    return [groups.find(i) for i in range(len(texts))]


def _join_shared_verses(texts: Sequence[str], groups: UnionFind) -> None:
    """Rule 3: join poems that share at least half of the shorter one's verses (and two)."""
    verses = [set(_verses(t)) for t in texts]
    poems_with: dict[str, list[int]] = defaultdict(list)
    for i, vs in enumerate(verses):
        for v in vs:
            poems_with[v].append(i)
    for i, vs in enumerate(verses):
        shared: dict[int, int] = defaultdict(int)  # later poem → verses it shares with poem i
        for v in vs:
            others = poems_with[v]
            if len(others) <= COMMON_VERSE:
                for j in others:
                    if j > i:
                        shared[j] += 1
        for j, n in shared.items():
            if n >= MIN_SHARED_VERSES and 2 * n >= min(len(vs), len(verses[j])):
                groups.union(i, j)


def _verses(text: str) -> list[str]:
    return [v for v in re.split(f"[{PUNCTUATION}]", text) if v]


def leaking_poems(texts: Sequence[str], held_out: Sequence[str]) -> set[int]:
    """Indices of ``texts`` whose near-duplicate group (over both lists) holds a ``held_out``
    poem: a chain of variants counts, as it does for the split."""
    groups = near_duplicate_groups([*held_out, *texts])
    tainted = set(groups[: len(held_out)])
    return {i for i, rep in enumerate(groups[len(held_out) :]) if rep in tainted}


def verbatim_verse_rate(test: Sequence[str], train: Sequence[str]) -> float:
    """Share of the verses of ``test`` poems that occur word for word among ``train``'s verses."""
    seen = {v for text in train for v in _verses(text)}
    verses = [v for text in test for v in _verses(text)]
    return sum(v in seen for v in verses) / max(len(verses), 1)


def report(unseen_file: str | None = None) -> None:
    """Print the grouping's counts for the shipped corpus (the figures in corpus/README.md).

    ``unseen_file``: also write there, one per line, the test poems no member of whose group was
    in train under the old per-poem rule (what a model trained on the old split never saw).
    """
    from poetry_lm.text.corpus import load_corpus, split_of

    splits = load_corpus()
    poems = [p for split in splits.values() for p in split]
    members: dict[str, list] = defaultdict(list)
    for p in poems:
        members[p.group].append(p)
    multi = [m for m in members.values() if len(m) > 1]
    exact = [m for m in multi if len({strip_punctuation(p.text) for p in m}) == 1]
    by_id = {name: [p for p in poems if split_of(p.id) == name] for name in splits}
    print(f"poems {len(poems)}, near-duplicate groups of 2 or more {len(multi)}")
    print(f"  poems in them {sum(map(len, multi))}; largest group {max(map(len, multi))}")
    print(f"  groups identical once punctuation is stripped {len(exact)}")
    print(f"  groups with variant readings, excerpts or added verses {len(multi) - len(exact)}")
    straddled = sum(len({split_of(p.id) for p in m}) > 1 for m in multi)
    print(f"  groups across splits under the old per-poem rule {straddled}")
    print(f"  poems whose split changed {sum(split_of(p.id) != split_of(p.group) for p in poems)}")
    print("split sizes " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    for name, split in (("old per-poem split", by_id), ("grouped split", splits)):
        train = [p.text for p in split["train"]]
        rate = verbatim_verse_rate([p.text for p in split["test"]], train)
        print(f"test verses found verbatim in train, {name}: {100 * rate:.2f}%")
    if unseen_file:
        unseen = [
            p.text
            for p in splits["test"]
            if all(split_of(q.id) != "train" for q in members[p.group])
        ]
        Path(unseen_file).parent.mkdir(parents=True, exist_ok=True)
        Path(unseen_file).write_text("".join(t + "\n" for t in unseen), encoding="utf-8")
        print(
            f"{len(unseen)} test poems unseen by the old split's training written to {unseen_file}"
        )


if __name__ == "__main__":
    report(sys.argv[1] if len(sys.argv) > 1 else None)
