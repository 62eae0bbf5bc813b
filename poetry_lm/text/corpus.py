"""The Tang poetry corpus: cleaning upstream poems, the shipped file, and the stable split.

Upstream is the chinese-poetry collection (npm ``chinese-poetry@2.0.1``, MIT), whose
``dist/quantangshi/poet.tang.*.json`` files hold ~57,600 poems in traditional script.
``corpus/build.py`` runs :func:`clean_text` over them and writes ``corpus/tang.jsonl.xz``.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import re
import unicodedata
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from poetry_lm.paths import DEFAULT_CORPUS, missing_hint
from poetry_lm.text.duplicates import PUNCTUATION, near_duplicate_groups

# PUNCTUATION (，。？！；：、) is kept inside poems; anything else but a CJK ideograph rejects one.
MIN_CHARS = 10  # fewer ideographs than a five-character couplet is a fragment, not a poem
MAX_TITLE_CHARS = 24  # 98% of titles fit; the rest are prefaces, cut to their first characters
SPLITS = ("train", "valid", "test")

# Editorial apparatus in the upstream text (see corpus/README.md).
# (一作「…」) variant readings and notes; nest, so strip innermost first
_NOTE = re.compile(r"（[^（）]*）")
_MARKER = re.compile(r"〖[^〖〗]*〗")  # 〖1〗 footnote markers
_CORRECTED = re.compile(r"\[([^\[\]]*)\]")  # [X]: X is an editor's corrected character; keep X
_LOST = re.compile(r"[{}□]")  # {…} describes a character without a code point, □ is a lost one
_MARK_RUN = re.compile(f"[{PUNCTUATION}]{{2,}}")  # 。。 (3,137 poems end so), ？。, ，。 …
_MARK_STRENGTH = "？！。；：，、"  # a run of marks keeps its strongest: the first in this order


class CorpusError(ValueError):
    """A corpus or poem file that cannot be used, with a one-sentence reason."""


@dataclass(frozen=True)
class Poem:
    id: str
    author: str
    title: str
    text: str  # simplified script, ideographs and PUNCTUATION only, no doubled marks
    group: str = ""  # the smallest id of the poem's near-duplicate group (its split's key)


def is_ideograph(ch: str) -> bool:
    """True for a CJK ideograph in any block, the supplementary planes included (𬬻, 𫏐)."""
    return len(ch) == 1 and unicodedata.name(ch, "").startswith(
        ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH")
    )


def is_poem_char(ch: str) -> bool:
    return ch in PUNCTUATION or is_ideograph(ch)


@lru_cache(maxsize=2)
def _opencc(config: str):
    import opencc  # imported lazily: only conversion needs it

    return opencc.OpenCC(config)


def to_simplified(text: str) -> str:
    return _opencc("t2s").convert(text)


def to_traditional(text: str) -> str:
    """Simplified → traditional in the standard forms (OpenCC ``s2tw``: 床, 群, 峰, where
    ``s2t`` writes the variants 牀, 羣, 峯), character for character: no regional vocabulary
    (``s2twp`` would rewrite words), so the length stays that of the text."""
    return _opencc("s2tw").convert(text)


def strip_annotations(text: str) -> str | None:
    """Remove editorial notes from a traditional-script poem; None if a character is lost."""
    text = "".join(text.split())
    while True:  # notes nest: （…〖1〗…（…）…）
        stripped = _MARKER.sub("", _NOTE.sub("", text))
        if stripped == text:
            break
        text = stripped
    text = _CORRECTED.sub(r"\1", text)
    return None if _LOST.search(text) else text


def normalise_marks(text: str) -> str:
    """Collapse each run of marks to its strongest: ``霜。。`` → ``霜。``, ``乎？。`` → ``乎？``."""
    return _MARK_RUN.sub(lambda m: min(m.group(), key=_MARK_STRENGTH.index), text)


def clean_text(traditional: str) -> str | None:
    """Upstream poem text → simplified poem text, or None if the poem must be dropped."""
    text = strip_annotations(traditional)
    if text is None:
        return None
    text = normalise_marks(to_simplified(text))
    if not all(is_poem_char(ch) for ch in text):
        return None
    if sum(is_ideograph(ch) for ch in text) < MIN_CHARS:
        return None
    return text


def clean_title(title: str) -> str:
    """A title as the model reads it: its ideographs only (``帝京篇十首 一`` → ``帝京篇十首一``),
    at most ``MAX_TITLE_CHARS`` of them."""
    return "".join(ch for ch in title if is_ideograph(ch))[:MAX_TITLE_CHARS]


def orient(text: str, direction: str) -> str:
    """A poem as a model of that direction reads it: ``"backward"`` reverses it."""
    return text[::-1] if direction == "backward" else text


def split_of(poem_id: str) -> str:
    """Stable split by id: md5(id) mod 10 → 0 test, 1 valid, 2–9 train.

    A poem's split is that of its group's smallest id (see :func:`load_corpus`)."""
    bucket = int(hashlib.md5(poem_id.encode("utf-8")).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


def load_corpus(path: Path | str = DEFAULT_CORPUS) -> dict[str, list[Poem]]:
    """Read the prepared corpus (JSON lines, xz-compressed) into {split: [Poem]}.

    Doubled marks are collapsed (:func:`normalise_marks`), and near-duplicate poems are grouped
    (:mod:`poetry_lm.text.duplicates`): every poem goes to the split of its group's smallest id,
    so no variant of a test poem is trained on. The result is memoised per file (path, size and
    modification time): the grouping takes about a second and several callers load the corpus.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus file {path} does not exist{missing_hint(Path(path))}")
    stat = path.stat()
    poems = _grouped_poems(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    splits: dict[str, list[Poem]] = {name: [] for name in SPLITS}
    for poem in poems:
        splits[split_of(poem.group)].append(poem)
    return splits


@lru_cache(maxsize=2)
def _grouped_poems(path: str, size: int, mtime_ns: int) -> tuple[Poem, ...]:
    """The file's poems in file order, each with its group; size and mtime only key the cache."""
    poems = read_poems(Path(path))
    representative = near_duplicate_groups([p.text for p in poems])
    smallest: dict[int, str] = {}
    for poem, rep in zip(poems, representative):
        smallest[rep] = min(smallest.get(rep, poem.id), poem.id)
    return tuple(replace(poem, group=smallest[rep]) for poem, rep in zip(poems, representative))


def read_poems(path: Path) -> list[Poem]:
    """The file's poems in file order, not grouped (``load_corpus`` groups and splits them)."""
    poems, known = [], set()  # known: the characters already found to be poem text
    try:
        with lzma.open(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                record = json.loads(line)
                fields = [record["id"], record["author"], record["title"], record["text"]]
                if not all(isinstance(value, str) for value in fields):
                    raise CorpusError(
                        f"corpus file {path} line {line_no}: id, author, title and text must be "
                        "strings"
                    )
                text = normalise_marks(record["text"])
                unseen = set(text) - known  # each character is looked up once, not 3 million times
                if not text or not all(is_poem_char(ch) for ch in unseen):
                    raise CorpusError(
                        f"corpus file {path} line {line_no} holds characters that are not poem text"
                    )
                known |= unseen
                poems.append(Poem(record["id"], record["author"], record["title"], text))
    except (
        lzma.LZMAError,
        EOFError,
        json.JSONDecodeError,
        KeyError,
        TypeError,
        UnicodeDecodeError,
    ) as err:
        raise CorpusError(
            f"corpus file {path} is not a valid xz-compressed JSON-lines corpus ({err})"
        ) from None
    return poems
