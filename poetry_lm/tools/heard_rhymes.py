"""``decoding-stats --rhymes``: rhymes as a reader hears them, real poems against written ones,
per form (五绝 七绝 五律 七律), by :func:`poetry_lm.evaluation.rhyme_rates.rhyme_rates`:

- the first-line rhyme rate (七言 poets mostly rhyme the first line, 五言 poets mostly not);
- the share of first lines that do not rhyme and end on a character of two readings (行, 长 …),
  which a reader hears as a rhyme that is not there;
- the share of rhymes on a reading real poems never rhyme the character in.

The real poems are the Tang test split's; the written ones are ``--poems`` per form, as
``generate --form F`` writes them with ``--seed`` (``--extra "--no-heard --no-rhyme-first"``:
under the old rules). Only regulated poems count (``prosody/check.py``): the last two columns
say how many.
"""

from __future__ import annotations

from collections.abc import Iterator

import click

from poetry_lm.evaluation.rhyme_rates import RhymeRates, rhyme_rates

FORMS = ("五绝", "七绝", "五律", "七律")
RATES = ("first_rhymes", "two_reading_ends", "unheard_rhymes")  # RhymeRates.shares()' keys
DECIMALS = {"first_rhymes": 1, "two_reading_ends": 1, "unheard_rhymes": 2}
HEADER = [
    "| form | first-line rhyme %, real | generated | unrhymed first line on a two-reading "
    "end %, real | generated | rhymes on an unheard reading %, real | generated | real poems "
    "| generated poems | generated with |",
    "|---|" + "---:|" * (2 * len(RATES) + 2) + "---|",
]


def rhyme_row(form: str, real: RhymeRates, written: RhymeRates, label: str) -> str:
    """One form's row: each rate real, then generated, then the poems each counts."""
    shares = real.shares(), written.shares()
    # rhymes on unheard readings are rare in real poems (1 in 4,000): two decimals
    cells = [f"{side[name]:.{DECIMALS[name]}f}" for name in RATES for side in shares]
    return f"| {form} | " + " | ".join(cells) + f" | {real.poems} | {written.poems} | {label} |"


def form_of(setting: str, extra: str) -> str:
    """The form a setting writes; a setting without one is a usage error."""
    from poetry_lm.tools.decoding_stats import setting_request

    form = setting_request(setting, extra).check_options().form
    if form is None:
        raise click.BadParameter(
            f"{setting} writes no form: --rhymes compares 五绝, 七绝, 五律 and 七律",
            param_hint="'--setting'",
        )
    return form


def rhyme_rows(settings: list[str], writing, test_texts: list[str]) -> Iterator[str]:
    """The table, a row per setting (as soon as its poems are written): the real poems of its
    form against ``writing.poems`` it writes. ``writing``: a decoding_stats.Writing."""
    from poetry_lm.tools.decoding_stats import generated_texts, setting_label

    forms = [form_of(setting, writing.extra) for setting in settings]  # all, before writing
    real = rhyme_rates(test_texts)
    yield from HEADER
    for setting, form in zip(settings, forms):
        texts = generated_texts(
            setting, writing.poems, writing.seed, writing.model_path, writing.extra
        )
        written = rhyme_rates(texts).get(form, RhymeRates())
        label = setting_label(setting, writing.extra)
        yield rhyme_row(form, real.get(form, RhymeRates()), written, label)
