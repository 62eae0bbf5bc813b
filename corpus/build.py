"""Rebuild corpus/tang.jsonl.xz from the upstream chinese-poetry package.

npm pack chinese-poetry@2.0.1 && tar xzf chinese-poetry-2.0.1.tgz
python corpus/build.py package/dist/quantangshi
"""

import json
import lzma
import sys
from collections import Counter
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from poetry_lm.text.corpus import DEFAULT_CORPUS, clean_text, load_corpus, to_simplified  # noqa: E402


@click.command()
@click.argument("upstream", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CORPUS,
    show_default=True,
)
def main(upstream: Path, out: Path) -> None:
    files = sorted(upstream.glob("poet.tang.*.json"), key=lambda p: int(p.stem.split(".")[-1]))
    if not files:
        raise click.ClickException(f"{upstream} holds no poet.tang.*.json files")
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    records = []
    for file in files:
        for poem in json.loads(file.read_text(encoding="utf-8")):
            counts["upstream"] += 1
            text = clean_text("".join(poem["paragraphs"]))
            if text is None:
                counts["dropped: lost characters, foreign symbols or fragment"] += 1
                continue
            if text in seen:  # the same poem filed twice would leak between splits
                counts["dropped: exact duplicate"] += 1
                continue
            seen.add(text)
            counts["kept"] += 1
            records.append(
                {
                    "id": poem["id"],
                    "author": to_simplified(poem.get("author") or ""),
                    "title": to_simplified(poem.get("title") or ""),
                    "text": text,
                }
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with lzma.open(tmp, "wt", encoding="utf-8", preset=9) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(out)
    for key, value in counts.items():
        click.echo(f"{key:55s} {value:6d}")
    click.echo(f"characters kept: {sum(len(r['text']) for r in records)}")
    for split, poems in load_corpus(out).items():  # near-duplicate groups decide the split
        click.echo(f"{'kept in ' + split:55s} {len(poems):6d}")


if __name__ == "__main__":
    main()
