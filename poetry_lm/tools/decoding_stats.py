"""How poems are written, measured: repetition, 重韵, rhyme, closing and verbatim copies of train
verses, for corpus poems and for generated ones, so that decoding can be set to the corpus.

    python -m poetry_lm decoding-stats                   # corpus rates, then every setting
    python -m poetry_lm decoding-stats --poems 200 --setting 七律-no-tones --setting beam-五律
    python -m poetry_lm decoding-stats --file poems.jsonl   # poems written elsewhere (JSON lines
                                                             # with "text", or one poem a line)
    python -m poetry_lm decoding-stats --no-corpus --setting 七绝-best-of-8 \
        --rerank-with back.pt --rerank-weight 0.5 --rerank-weight 1   # plain against reranked

    python -m poetry_lm decoding-stats --no-corpus --setting 七绝 --keywords 3   # with keywords

    python -m poetry_lm decoding-stats --rhymes -n 1000      # rhymes as heard, real and written
    python -m poetry_lm decoding-stats --rhymes -n 1000 --extra "--no-heard --no-rhyme-first"

With ``--rhymes`` the table is another (:mod:`poetry_lm.tools.heard_rhymes`): per form, the
test split's poems against ``--poems`` written ones, the first lines that rhyme, unrhymed first
lines that end on a two-reading character, and rhymes on readings real poems never rhyme in.

With ``--keywords N`` each poem of a setting is written twice, one poem at a time: as the
command line writes it (its options, the seeds ``--seed`` draws) and with N keywords drawn
(by ``--seed``) from common imagery characters (``IMAGERY``); the two rows add each one's
mean score (mean penalised log-probability), the share of poems holding every keyword, and the
median CPU time per poem, the two timed in turn so that load falls on both alike.

The checker here reads the rhyme table file on its own and splits verses on its own: it shares
no code with the rules that generation enforces (``prosody/forms.py``, ``prosody/rhyme.py``), so
it can catch them out.

Rates, each the share of poems (verse counts: of verses):

- ``char3``: some character used 3 or more times (marks aside);
- ``same_place``: two adjacent verses with the same character at the same place (萧萧 … 萧萧
  counts like any other);
- ``repeated_verse``: a verse written twice;
- ``chongyun`` (重韵): two rhyming verses ending in the same character (the even verses,
  and the first where it ends in their group);
- ``rhymes``: the even verses' last characters share a 平水韵 group (any tone);
- ``closed``: the poem ends on 。, ？ or ！; ``double_mark``: two marks in a row;
- ``mixed``: verses of different lengths; ``copied``: verses that are verses of train poems
  (share of verses).

With ``--rerank-with`` (a backward checkpoint, :mod:`poetry_lm.decoding.rerank`) each setting is
written with plain ranking and then reranked at each ``--rerank-weight`` (the same seeds, so the
same candidates), and every row adds the kept poems' mean log-probability per token under the
forward model and under the backward one (−log of their perplexity under each, by the models'
float32 sequence path). A setting with one candidate per poem has nothing to rerank.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import click

from poetry_lm.errors import run_or_exit
from poetry_lm.options import field_default, seed_option

MARKS = "，。？！；：、"
CLOSING = "。？！"
FORM_SHAPES = {(4, 5): "五绝", (4, 7): "七绝", (8, 5): "五律", (8, 7): "七律"}
TABLE_FILE = Path(__file__).resolve().parents[1] / "prosody" / "pingshui.txt"
RATES = ("char3", "same_place", "repeated_verse", "chongyun", "rhymes", "closed", "double_mark")
IMAGERY = "春秋月风花雨山水云雪柳江夜酒归梦雁舟霜烟松竹灯草"  # keywords are drawn from these


@lru_cache(maxsize=1)
def rhyme_table() -> dict[str, frozenset[str]]:
    """{character: the names of the groups it is in}, read from the table file directly."""
    groups: dict[str, set[str]] = {}
    for row in TABLE_FILE.read_text(encoding="utf-8").splitlines():
        if row.startswith("#"):
            continue
        name, _tone, chars = row.split("\t")
        for ch in chars:
            groups.setdefault(ch, set()).add(name)
    return {ch: frozenset(g) for ch, g in groups.items()}


def split_verses(text: str) -> list[str]:
    """Verses with their closing mark; text after the last mark is a verse too. (Its own,
    not ``decoding.loop.verses``: the checker shares no code with generation.)"""
    out, current = [], ""
    for ch in text:
        current += ch
        if ch in MARKS:
            out.append(current)
            current = ""
    return out + [current] if current else out


def shape_of(text: str) -> str:
    """五绝 … 七律 for 4 or 8 verses of 5 or 7 characters, else 'free'."""
    words = [v.rstrip(MARKS) for v in split_verses(text)]
    lengths = {len(w) for w in words}
    if len(lengths) == 1:
        return FORM_SHAPES.get((len(words), lengths.pop()), "free")
    return "free"


def poem_flags(text: str) -> dict[str, bool]:
    """Each rate's flag for one poem (see the module doc)."""
    verses = split_verses(text)
    words = [v.rstrip(MARKS) for v in verses]
    counts = Counter(ch for ch in text if ch not in MARKS)
    same_place = any(
        any(a == b for a, b in zip(first, second)) for first, second in zip(words, words[1:])
    )
    even_ends = [w[-1] for w in words[1::2] if w]
    table = rhyme_table()
    shared = frozenset.intersection(*(table.get(ch, frozenset()) for ch in even_ends or "?"))
    # a first verse ending in the even verses' group rhymes too (首句入韵), so it counts for 重韵
    first = words[0][-1] if len(words) > 1 and words[0] else ""
    rhyme_ends = even_ends + ([first] if shared & table.get(first, frozenset()) else [])
    return {
        "char3": any(n >= 3 for n in counts.values()),
        "same_place": same_place,
        "repeated_verse": len(set(words)) < len(words),
        "chongyun": len(set(rhyme_ends)) < len(rhyme_ends),
        "rhymes": len(even_ends) > 1 and bool(shared),
        "closed": bool(text) and text[-1] in CLOSING,
        "double_mark": any(a in MARKS and b in MARKS for a, b in zip(text, text[1:])),
        "mixed": len({len(w) for w in words}) > 1,
    }


@dataclass
class Rates:
    poems: int
    rates: dict[str, float]  # share of poems with each flag
    copied: float | None  # share of verses that are train verses (None: not measured)


def rates_of(texts: list[str], train_verses: set[str] | None = None) -> Rates:
    flags = [poem_flags(t) for t in texts]
    rates = {name: sum(f[name] for f in flags) / max(len(flags), 1) for name in flags[0]}
    copied = None
    if train_verses is not None:
        words = [w for t in texts for w in (v.rstrip(MARKS) for v in split_verses(t)) if w]
        copied = sum(w in train_verses for w in words) / max(len(words), 1)
    return Rates(len(texts), rates, copied)


def train_verse_index(train_texts: list[str]) -> set[str]:
    """Every verse (marks stripped) of the train poems."""
    return {w for t in train_texts for w in (v.rstrip(MARKS) for v in split_verses(t)) if w}


# name -> the generate options it stands for; every form setting has generate's defaults, 平仄
# (tones) among them, except 七律-no-tones, the same 七律 without
SETTING_ARGS = {
    "五绝": "--form 五绝",
    "七绝": "--form 七绝",
    "五律": "--form 五律",
    "七律": "--form 七律",
    "七律-no-tones": "--form 七律 --no-tones",
    "五律-best-of-8": "--form 五律 --best-of 8",
    "七绝-best-of-8": "--form 七绝 --best-of 8",
    "beam-五律": "--form 五律 --beam 4",
    "beam-七绝": "--form 七绝 --beam 4",
    "beam-五绝": "--form 五绝 --beam 4",
    "free": "",
    "free-acrostic": "--acrostic 春夏秋冬",
}


def generate_args(setting: str, extra: str = "") -> list[str]:
    """The generate options of a setting: its own, then the ``extra`` ones."""
    return [*SETTING_ARGS[setting].split(), *extra.split()]


@lru_cache(maxsize=2)
def writer_of(model_path: str):
    """The Writer of a checkpoint, loaded once (unreadable: one sentence, exit status 1)."""
    from poetry_lm.writing.writer import Writer

    return run_or_exit(Writer, model_path)


def setting_request(setting: str, extra: str = "", **values):
    """The PoemRequest a setting stands for, unchecked: its generate options, then the
    ``extra`` ones, then the request fields ``values`` (n, seed, rerank_with …)."""
    from poetry_lm.tools.request_args import parse_request

    return dataclasses.replace(parse_request(generate_args(setting, extra)), **values)


def generated_texts(
    setting: str, poems: int, seed: int, model_path: str, extra: str = "", **values
) -> list[str]:
    """``poems`` poems of a setting, as the command line writes them (its defaults, then the
    ``extra`` options, then the request fields ``values``), with the seeds ``--seed`` draws."""
    request = setting_request(setting, extra, n=poems, seed=seed, **values)
    return [poem.text for poem in run_or_exit(writer_of(model_path).write, request)]


def check_writing(settings: list[str], model_path: str, extra: str) -> None:
    """Before the table starts: the model that writes ``settings`` loads and can write, and
    every setting's generate options, ``extra`` included, parse and agree. Each fault is one
    sentence: exit 1 for a model that cannot be read, 2 (usage) for a backward one or for
    options that generate does not take."""
    from poetry_lm.settings import SettingError
    from poetry_lm.tools.request_args import option_words
    from poetry_lm.usage import option_error

    if not settings:
        return
    writer = writer_of(model_path)
    try:
        _ = writer.step
    except ValueError as err:  # a backward model: the stepper says why it cannot write
        raise option_error(f"{err} (give it to --rerank-with)", "--model") from None
    for setting in settings:
        args = generate_args(setting, extra)
        try:
            writer.check(setting_request(setting, extra))
        except click.UsageError as err:
            said = err.format_message()
        except SettingError as err:
            said = option_words(err)
        else:
            continue
        raise click.BadParameter(f"generate {' '.join(args)}: {said}", param_hint="'--extra'")


def keyword_sets(poems: int, n: int, seed: int) -> list[list[str]]:
    """n keywords per poem, drawn from IMAGERY by ``seed``."""
    rng = random.Random(seed)
    return [rng.sample(IMAGERY, n) for _ in range(poems)]


@dataclass
class Written:
    texts: list[str]
    scores: list[float]
    seconds: list[float]  # CPU time per poem

    def info(self) -> str:
        ms = 1000 * statistics.median(self.seconds)
        score = statistics.mean(self.scores)
        return f"{len(set(self.texts))}; score {score:.3f}; {ms:.1f} ms a poem"


def with_keywords(
    setting: str, keywords: list[list[str]], seed: int, model_path: str, extra: str = ""
) -> tuple[Written, Written]:
    """The setting's poems (as the command line writes them: its options, its seeds) without
    and with ``keywords[i]`` for poem i, one poem at a time, each pair timed in turn."""
    from poetry_lm.writing.writer import poem_seeds

    writer = writer_of(model_path)
    plain = writer.check(setting_request(setting, extra))
    runs = (Written([], [], []), Written([], [], []))
    for poem_seed, words in zip(poem_seeds(seed, len(keywords)), keywords):
        keyed = writer.check(dataclasses.replace(plain, keywords=tuple(words)))
        for run, request in zip(runs, (plain, keyed)):
            start = time.process_time()
            (poem,) = writer.write_rows(request, [""], [poem_seed])
            run.seconds.append(time.process_time() - start)
            run.texts.append(poem.text)
            run.scores.append(poem.score)
    return runs


def covered(texts: list[str], keywords: list[list[str]]) -> float:
    """The share of poems with every keyword inside one of their verses."""
    held = [
        all(any(k in verse for verse in split_verses(text)) for k in words)
        for text, words in zip(texts, keywords)
    ]
    return sum(held) / max(len(held), 1)


def at_head(texts: list[str], keywords: list[list[str]]) -> float:
    """The share of keywords (each where it first appears) that begin a verse: 13% of these
    imagery characters in the train split's 七绝 do."""
    first = [
        next((verse.index(k) for verse in split_verses(text) if k in verse), None)
        for text, words in zip(texts, keywords)
        for k in words
    ]
    placed = [col for col in first if col is not None]
    return sum(col == 0 for col in placed) / max(len(placed), 1)


def row(label: str, r: Rates, extra: str = "", logp: tuple[float | None, ...] = ()) -> str:
    """A table row; ``logp``: the log-probability columns' values (None: blank)."""
    cells = [f"{100 * r.rates[name]:.1f}" for name in RATES]
    copied = "" if r.copied is None else f"{100 * r.copied:.2f}"
    scored = "".join("  |" if x is None else f" {x:.3f} |" for x in logp)
    return f"| {label} | {r.poems} | " + " | ".join(cells) + f" | {copied} |{scored} {extra} |"


def header(scored: bool) -> list[str]:
    """The table's head; ``scored``: with the forward and backward log-probability columns."""
    logp = " log-p/token fwd | log-p/token bwd |" if scored else ""
    return [
        "| poems | n | char ≥3 % | same place % | repeated verse % | 重韵 % | rhymes % | closed % "
        f"| 。。 % | train verses % |{logp} distinct |",
        "|---|---:|" + "---:|" * (len(RATES) + 2 + 2 * scored),
    ]


def readers(model_path: str, reader_path: str):
    """(forward model, backward reader, vocabulary) for the log-probability columns; a reader
    that cannot rerank for the forward model is a usage error, as in ``generate``."""
    from poetry_lm.errors import USER_ERRORS
    from poetry_lm.settings import SettingError
    from poetry_lm.usage import option_error

    writer = writer_of(model_path)
    try:
        reader = writer.reader(reader_path)
    except SettingError as err:  # no backward model of this vocabulary
        raise option_error(err.worded({"rerank_with": "--rerank-with"}), "--rerank-with") from None
    except USER_ERRORS as err:  # unreadable: exit status 1, as --model
        raise click.ClickException(str(err)) from None
    return writer.model, reader, writer.table


def mean_logprobs(texts: list[str], models: list, table) -> tuple[float, ...]:
    """Each model's mean log-probability per token of ``texts`` (pooled): −log perplexity.
    No models, no figures."""
    from poetry_lm.evaluation.perplexity import perplexity

    return tuple(-math.log(perplexity(m, table, texts).perplexity) for m in models)


@dataclass
class Judge:
    """What every row of the table is judged against: the train split's verses (``copied``) and
    the models of the log-probability columns (none without ``--rerank-with``)."""

    index: set[str]  # train_verse_index of the train split
    scorers: list = field(default_factory=list)  # forward model, backward reader
    table: object = None  # their vocabulary

    def blank(self) -> tuple[None, ...]:
        """The log-probability cells of a row that has none (corpus rows, keyword rows)."""
        return (None,) * len(self.scorers)

    def row_of(self, label: str, texts: list[str], extra: str) -> str:
        """The row of generated or given poems: their rates, copies and log-probabilities."""
        logp = mean_logprobs(texts, self.scorers, self.table)
        return row(label, rates_of(texts, self.index), extra, logp)


@dataclass
class Writing:
    """How the poems of every setting are written: as ``generate`` would, with these options."""

    poems: int  # per setting
    seed: int
    model_path: str
    extra: str  # more generate options, after the setting's own


def setting_label(setting: str, extra: str) -> str:
    """A setting's row label: the generate options it stands for, as code."""
    return f"`{' '.join(generate_args(setting, extra)) or '(free)'}`"


def corpus_rows(splits: dict, judge: Judge) -> Iterator[str]:
    """The train split's rows, one per shape (五绝 … 七律, free), then the test split's with its
    share of train verses: the rates that decoding is set to."""
    by_shape: dict[str, list[str]] = {}
    for p in splits["train"]:
        by_shape.setdefault(shape_of(p.text), []).append(p.text)
    for shape in [*FORM_SHAPES.values(), "free"]:
        yield row(f"train {shape}", rates_of(by_shape[shape]), logp=judge.blank())
    test = [p.text for p in splits["test"]]
    yield row("test (all), copies of train verses", rates_of(test, judge.index), logp=judge.blank())


def file_row(poem_file: str, judge: Judge) -> str:
    """The row of the poems in ``poem_file``: JSON lines with "text", or one poem a line."""
    from poetry_lm.text.normalise import read_text_lines

    lines = run_or_exit(read_text_lines, poem_file)  # a file at fault: one sentence, as --file's
    texts = [json.loads(x)["text"] if x.startswith("{") else x for x in lines if x.strip()]
    return judge.row_of(poem_file, texts, f"{len(set(texts))}")


def keyword_rows(
    setting: str, n_keywords: int, writing: Writing, judge: Judge
) -> tuple[list[str], str]:
    """A setting's two rows with ``--keywords``: its poems written one at a time without and
    with ``n_keywords`` keywords each (:func:`with_keywords`); and the ratio of their median CPU
    times per poem, for the closing line."""
    keywords = keyword_sets(writing.poems, n_keywords, writing.seed)
    plain, keyed = with_keywords(setting, keywords, writing.seed, writing.model_path, writing.extra)
    label = setting_label(setting, writing.extra)
    index, blank = judge.index, judge.blank()
    held = (
        f"; keywords held {100 * covered(keyed.texts, keywords):.1f}%, "
        f"{100 * at_head(keyed.texts, keywords):.0f}% at a verse's head"
    )
    rows = [
        row(f"{label}, one at a time", rates_of(plain.texts, index), plain.info(), blank),
        row(
            f"{label} + {n_keywords} keywords",
            rates_of(keyed.texts, index),
            keyed.info() + held,
            blank,
        ),
    ]
    ratio = statistics.median(keyed.seconds) / statistics.median(plain.seconds)
    return rows, f"{setting}: with keywords / without = {ratio:.2f}"


def ranking_rows(
    setting: str, writing: Writing, judge: Judge, reader_path: str | None, weights: Iterable[float]
) -> Iterator[str]:
    """A setting's row with plain ranking, then (given a backward reader and more than one
    candidate per poem) one row reranked at each weight λ: the same seeds, so the same
    candidates. Each row as soon as its poems are written, with their wall time."""
    label = setting_label(setting, writing.extra)
    runs = [("", {})]  # (label suffix, request fields): plain ranking, then each rerank
    if reader_path and setting_request(setting, writing.extra).width > 1:
        runs += [
            (f" rerank λ={w:g}", dict(rerank_with=reader_path, rerank_weight=w)) for w in weights
        ]
    for suffix, rerank in runs:
        start = time.perf_counter()
        texts = generated_texts(
            setting, writing.poems, writing.seed, writing.model_path, writing.extra, **rerank
        )
        yield judge.row_of(
            label + suffix, texts, f"{len(set(texts))} ({time.perf_counter() - start:.0f} s)"
        )


def times_line(times: list[str], threads: int) -> str:
    """The closing line with ``--keywords``: each setting's time ratio, on this CPU."""
    from poetry_lm.model.kernels.gemm import cpu_model

    return f"\nMedian CPU time a poem, {cpu_model()}, {threads} thread(s): " + "; ".join(times)


def rhymes_table(settings: list[str], writing: Writing) -> Iterator[str]:
    """--rhymes: each setting's rhymes as heard, against the test split's poems of its form."""
    from poetry_lm.text.corpus import load_corpus
    from poetry_lm.tools.heard_rhymes import rhyme_rows

    return rhyme_rows(settings, writing, [p.text for p in load_corpus()["test"]])


@click.command("decoding-stats")
@click.option(
    "-n",
    "--poems",
    type=click.IntRange(1),
    default=200,
    show_default=True,
    help="Poems written per setting (with --rhymes: per form).",
)
@click.option("--setting", "settings", multiple=True, type=click.Choice(list(SETTING_ARGS)))
@seed_option(1, "Seed of the generated poems (as generate's --seed).")
@click.option("--file", "poem_file", type=click.Path(dir_okay=False), default=None)
@click.option("--corpus/--no-corpus", default=True, help="Report the train split's rates too.")
@click.option(
    "--model", "model_path", default=None, help="Checkpoint (default: the shipped model)."
)
@click.option("--extra", default="", help="More generate options for every setting.")
@click.option(
    "--rerank-with",
    "reader_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="A backward checkpoint: each setting plain and reranked, with the kept poems' mean "
    "log-probability per token under both models.",
)
@click.option(
    "--rerank-weight",
    "weights",
    type=click.FloatRange(0),
    multiple=True,
    help="λ of a reranked row (repeatable: one row each) [default: generate's --rerank-weight].",
)
@click.option(
    "--keywords",
    "n_keywords",
    type=click.IntRange(0, 6),
    default=0,
    help="Write each setting's poems without and with this many keywords each (drawn from "
    "common imagery characters), one at a time: coverage, score and time per poem too.",
)
@click.option(
    "--rhymes",
    is_flag=True,
    help="Instead of the rates table: rhymes as heard, per form, real (the test split) against "
    "generated: first lines that rhyme, unrhymed first lines on a two-reading end, rhymes on "
    'an unheard reading (old rules: --extra "--no-heard --no-rhyme-first").',
)
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
def main(
    poems,
    settings,
    seed,
    poem_file,
    corpus,
    model_path,
    extra,
    reader_path,
    weights,
    n_keywords,
    rhymes,
    threads,
):
    """Repetition, 重韵, rhyme, closing and train-verse copies: corpus and generated (percent)."""
    import torch

    from poetry_lm.paths import SHIPPED_MODEL
    from poetry_lm.request import PoemRequest
    from poetry_lm.text.corpus import load_corpus

    torch.set_num_threads(threads)
    weights = weights or [field_default(PoemRequest, "rerank_weight")]
    writing = Writing(poems, seed, model_path or str(SHIPPED_MODEL), extra)
    if rhymes and (poem_file or n_keywords or reader_path):
        raise click.UsageError(
            "--rhymes makes a table of its own: give it without --file, --keywords or --rerank-with"
        )
    every = FORM_SHAPES.values() if rhymes else SETTING_ARGS
    settings = settings or ([] if poem_file else list(every))
    check_writing(settings, writing.model_path, extra)
    if rhymes:
        return click.echo("\n".join(rhymes_table(settings, writing)))
    scorers, table = [], None
    if reader_path:
        *scorers, table = readers(writing.model_path, reader_path)
    splits = load_corpus()
    judge = Judge(train_verse_index([p.text for p in splits["train"]]), scorers, table)
    click.echo("\n".join(header(bool(scorers))))
    if corpus:
        for line in corpus_rows(splits, judge):
            click.echo(line)
    if poem_file:
        click.echo(file_row(poem_file, judge))
    times: list[str] = []  # with keywords: the time ratio per setting
    for setting in settings:
        if n_keywords:
            rows, ratio = keyword_rows(setting, n_keywords, writing, judge)
            click.echo("\n".join(rows))
            times.append(ratio)
        else:
            for line in ranking_rows(setting, writing, judge, reader_path, weights):
                click.echo(line)
    if times:
        click.echo(times_line(times, threads))
