"""Rebuild corpus/tang.jsonl.xz and corpus/song.jsonl.xz from the upstream chinese-poetry package.

npm pack chinese-poetry@2.0.1 && tar xzf chinese-poetry-2.0.1.tgz
python corpus/build.py package/dist/quantangshi

Both corpora are cleaned by the same rules (``poetry_lm.text.corpus.clean_text``). The Song one
also drops every poem whose text is a Tang poem's, and every poem that is a near duplicate
(``poetry_lm.text.duplicates``) of a Tang valid or test poem: pretraining on it cannot leak a
variant of a poem that Tang perplexity is measured on.
"""

import json
import lzma
import sys
from collections import Counter
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from poetry_lm.paths import DEFAULT_CORPUS, SONG_CORPUS  # noqa: E402
from poetry_lm.text.corpus import clean_text, load_corpus, to_simplified  # noqa: E402
from poetry_lm.text.duplicates import leaking_poems  # noqa: E402

CLEANING = "dropped: lost characters, foreign symbols or fragment"


def read_upstream(upstream: Path, dynasty: str, counts: Counter) -> list[dict]:
    """The package's poems of one dynasty, cleaned, each text once, in file order."""
    files = sorted(
        upstream.glob(f"poet.{dynasty}.*.json"), key=lambda p: int(p.stem.split(".")[-1])
    )
    if not files:
        raise click.ClickException(f"{upstream} holds no poet.{dynasty}.*.json files")
    seen: set[str] = set()
    records = []
    for file in files:
        for poem in json.loads(file.read_text(encoding="utf-8")):
            counts["upstream"] += 1
            text = clean_text("".join(poem["paragraphs"]))
            if text is None:
                counts[CLEANING] += 1
                continue
            if text in seen:  # the same poem filed twice would leak between splits
                counts["dropped: exact duplicate"] += 1
                continue
            seen.add(text)
            records.append(
                {
                    "id": poem["id"],
                    "author": to_simplified(poem.get("author") or ""),
                    "title": to_simplified(poem.get("title") or ""),
                    "text": text,
                }
            )
    return records


def write(records: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with lzma.open(tmp, "wt", encoding="utf-8", preset=9) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(out)


def report(name: str, counts: Counter, records: list[dict], out: Path) -> None:
    click.echo(f"== {name}: {out}")
    for key, value in counts.items():
        click.echo(f"{key:60s} {value:7d}")
    click.echo(f"{'kept':60s} {len(records):7d}")
    click.echo(f"characters kept: {sum(len(r['text']) for r in records)}")
    for split, poems in load_corpus(out).items():  # near-duplicate groups decide the split
        click.echo(f"{'kept in ' + split:60s} {len(poems):7d}")


@click.command()
@click.argument("upstream", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CORPUS,
    show_default=True,
    help="The Tang corpus.",
)
@click.option(
    "--song-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=SONG_CORPUS,
    show_default=True,
    help="The Song corpus.",
)
@click.option(
    "--only",
    type=click.Choice(["tang", "song"]),
    help="Build one corpus; the Song one reads the Tang one at --out.",
)
def main(upstream: Path, out: Path, song_out: Path, only: str | None) -> None:
    if only != "song":
        counts: Counter[str] = Counter()
        tang = read_upstream(upstream, "tang", counts)
        write(tang, out)
        report("Tang", counts, tang, out)
    if only != "tang":
        build_song(upstream, out, song_out)


def build_song(upstream: Path, tang_file: Path, out: Path) -> None:
    """Song poems, without Tang texts and without a near duplicate of a Tang valid or test poem."""
    counts: Counter[str] = Counter()
    song = read_upstream(upstream, "song", counts)
    splits = load_corpus(tang_file)
    tang_texts = {p.text for split in splits.values() for p in split}
    kept = [r for r in song if r["text"] not in tang_texts]
    counts["dropped: a Tang poem's text"] = len(song) - len(kept)
    held_out = [p.text for name in ("valid", "test") for p in splits[name]]
    leaks = leaking_poems([r["text"] for r in kept], held_out)
    counts["dropped: near duplicate of a Tang valid or test poem"] = len(leaks)
    kept = [r for i, r in enumerate(kept) if i not in leaks]
    write(kept, out)
    report("Song", counts, kept, out)


if __name__ == "__main__":
    main()
