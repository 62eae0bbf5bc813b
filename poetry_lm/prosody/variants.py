"""Variant characters of a vocabulary: tokens that stand for another token of the same
vocabulary in its standard simplified form (劒 for 剑, 鴈 for 雁, 燄 for 焰).

The corpus was converted to simplified script by OpenCC's ``t2s``, which leaves alone every
character it has no mapping for: 劒, 鴈 and 燄 are in no OpenCC dictionary (``t2s``, ``tw2s``,
``hk2s``, ``jp2t``…), so the shipped vocabulary keeps them beside 剑, 雁 and 焰, and the model
writes them. ``variants.tsv`` lists each such token of the shipped vocabulary with its standard
form and where the pair comes from. A token is a variant when

- it is outside GB 2312 (the 6,763 characters of standard simplified script: so 乾 of 乾坤, or
  both 惟 and 唯, stay), and
- its ``t2s`` form, or the ``t2s`` form of one of its Unihan variants (``kSemanticVariant`` or
  ``kZVariant`` of Unihan_Variants.txt, Unicode 15.0), is another token of the vocabulary in
  GB 2312, and the only one: that token is its standard form.

Generation writes no variant whose standard form is in the vocabulary (``masks.token_masks``,
with the readings as heard): the model's probability goes to the other tokens, its standard form
among them. ``python -m poetry_lm.prosody.variants [Unihan_Variants.txt(.bz2)]`` rebuilds the
table for the shipped model (Debian's ``unicode-data`` holds the Unihan file) and prints the
counts.
"""

from __future__ import annotations

import bz2
import sys
from functools import lru_cache
from pathlib import Path

TABLE_PATH = Path(__file__).resolve().parent / "variants.tsv"
UNIHAN = Path("/usr/share/unicode/Unihan_Variants.txt.bz2")
KINDS = ("kSemanticVariant", "kZVariant")


def is_standard(ch: str) -> bool:
    """Whether ``ch`` is in GB 2312, the standard simplified character set."""
    try:
        ch.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True


@lru_cache(maxsize=1)
def variant_table() -> dict[str, str]:
    """The shipped table: variant → its standard form."""
    rows = TABLE_PATH.read_text(encoding="utf-8").splitlines()
    return dict(row.split("\t")[:2] for row in rows if not row.startswith("#"))


def variants_in(tokens) -> frozenset[str]:
    """The tokens that are variants of another of ``tokens`` (by the shipped table)."""
    present = set(tokens)
    return frozenset(t for t in present if variant_table().get(t) in present)


def read_unihan(path: Path) -> dict[str, list[str]]:
    """Unihan_Variants.txt (or .bz2) → character → its semantic and Z variants."""
    opener = bz2.open if path.suffix == ".bz2" else open
    out: dict[str, list[str]] = {}
    with opener(path, "rt", encoding="utf-8") as rows:
        for row in rows:
            cells = row.rstrip("\n").split("\t")
            if len(cells) == 3 and cells[1] in KINDS:
                codes = (c.split("<")[0] for c in cells[2].split())
                out.setdefault(chr(int(cells[0][2:], 16)), []).extend(
                    chr(int(c[2:], 16)) for c in codes
                )
    return out


def find_variants(tokens, unihan: dict[str, list[str]], t2s) -> dict[str, tuple[str, str]]:
    """variant → (standard form, source: ``t2s`` or ``Unihan+t2s``) among ``tokens``."""
    vocab, found = set(tokens), {}
    for tok in sorted(vocab):
        if len(tok) != 1 or is_standard(tok):
            continue
        candidates = [(t2s(tok), "t2s")] + [(t2s(v), "Unihan+t2s") for v in unihan.get(tok, [])]
        fits = {std: source for std, source in reversed(candidates) if std != tok}
        fits = {std: source for std, source in fits.items() if std in vocab and is_standard(std)}
        if len(fits) == 1:  # one standard form: 胷 (匈 or 胸?) is left alone
            found[tok] = next(iter(fits.items()))
    return found


def main() -> None:
    import torch

    from poetry_lm.paths import MODEL_FILE, SHIPPED_MODEL
    from poetry_lm.text.corpus import to_simplified

    unihan = read_unihan(Path(sys.argv[1]) if len(sys.argv) > 1 else UNIHAN)
    # the vocabulary alone (prosody reads no model): a checkpoint's "vocab", a token list
    tokens = torch.load(SHIPPED_MODEL, map_location="cpu", weights_only=True)["vocab"]
    found = find_variants(tokens, unihan, to_simplified)
    rows = [f"# built by python -m poetry_lm.prosody.variants from {MODEL_FILE}'s vocabulary"]
    rows += [f"{v}\t{std}\t{source}" for v, (std, source) in sorted(found.items())]
    TABLE_PATH.write_text("\n".join(rows) + "\n", encoding="utf-8")
    by_source = {s: sum(src == s for _, src in found.values()) for s in ("t2s", "Unihan+t2s")}
    print(f"{len(found)} variants in {len(tokens)} tokens: {by_source}")


if __name__ == "__main__":
    main()
