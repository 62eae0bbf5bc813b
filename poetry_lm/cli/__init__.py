"""The ``poetry-lm`` command group (also ``python -m poetry_lm``).

Each command lives in its own module and is imported only when it runs, so ``generate`` never
pays for what ``train`` or the tools import (fastNLP, matplotlib): click's lazy-group pattern.
"""

from __future__ import annotations

import importlib
import sys

import click

from poetry_lm.streams import silence_stdout

# name -> "module:attribute"; product commands first, then the tools' and the learners' ones
COMMANDS = {
    "train": "poetry_lm.cli.train:train_command",
    "generate": "poetry_lm.cli.write:generate_command",
    "evaluate": "poetry_lm.cli.evaluate:evaluate_command",
    "score": "poetry_lm.cli.score:score_command",
    "check": "poetry_lm.cli.check:check_command",
    "duizhang": "poetry_lm.cli.duizhang:duizhang_command",
    "serve": "poetry_lm.serve.command:serve_command",
    "loadtest": "poetry_lm.tools.loadtest:loadtest_command",
    "bench": "poetry_lm.tools.bench:bench_command",
    "gradcheck": "poetry_lm.learn.gradcheck:main",
    "gradflow": "poetry_lm.learn.gradflow:main",
    "ngram": "poetry_lm.tools.ngram:main",
    "compare": "poetry_lm.tools.compare:main",
    "numpy-lm": "poetry_lm.learn.numpy_lm:main",
    "exercise": "poetry_lm.learn.exercise:exercise",
    "decoding-stats": "poetry_lm.tools.decoding_stats:main",
}

# What ``poetry-lm --help`` lists, so that listing imports no command (nor torch, 2 s): each is
# the first sentence of its command's help, which tests/cli/test_commands.py holds them to.
SHORT_HELP = {
    "train": "Train a poem model; the defaults are the recipe of the shipped model.",
    "generate": "Write poems that begin with each of CHARS (e.g. 日红山夜湖海月), or with each "
    "--start text.",
    "evaluate": "Print the perplexity of a checkpoint (--model, or the argument CHECKPOINT) on a "
    "corpus split or on a file of poems.",
    "score": "How Tang-like is POEM (either script): per-character surprisal and perplexity.",
    "check": "The 格律 of POEM (either script; verses split at marks, spaces or line breaks): "
    "each character's 平仄 and reading, each rhyme's group, the form, and the faults",
    "duizhang": "对仗 of the middle couplets of the 律诗 in a split or a file, against train "
    "couplets.",
    "serve": "Serve the page at / and the API under /api (docs at /docs).",
    "loadtest": "Throughput and latency of the web service under concurrent clients (loopback "
    "only).",
    "bench": "Measure training-step speed of the LSTM layer and the output layer; print markdown.",
    "gradcheck": "Compare the numpy reference cells' BPTT with torch and with finite differences.",
    "gradflow": "Plot the gradient norm of the last step's loss w.r.t. each earlier hidden state.",
    "ngram": "Train a Kneser-Ney n-gram model on the train split, with the vocabulary of "
    "--model, and print its perplexity.",
    "compare": "Print a markdown table of the runs in FOLDERS.",
    "numpy-lm": "Train a numpy RNN language model by SGD with truncated BPTT and print its "
    "perplexity.",
    "exercise": "Write the cells' backward passes yourself (init), then check them (grade).",
    "decoding-stats": "Repetition, 重韵, rhyme, closing and train-verse copies: corpus and "
    "generated (percent).",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use; its help lists them from SHORT_HELP."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def main(self, *args, **kwargs):
        """click's main; help or a usage message that cannot be written (``--help > /dev/full``)
        is one sentence and exit status 1, as a poem that cannot be is (streams.emit)."""
        try:
            return super().main(*args, **kwargs)
        except OSError as err:
            silence_stdout()
            click.echo(f"Error: cannot write to standard output ({err.strerror or err})", err=True)
            sys.exit(1)

    def format_commands(self, ctx, formatter):
        """The commands and their short help, as click writes them, without importing one."""
        limit = formatter.width - 6 - max(map(len, COMMANDS))
        rows = [(name, shortened(SHORT_HELP[name], limit)) for name in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def shortened(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters at a word, with "...", as click cuts short help."""
    if len(text) <= limit:
        return text
    return text[: limit - 3].rsplit(" ", 1)[0] + "..."


@click.group(cls=LazyGroup)
def main():
    """poetry_lm: a character-level LSTM that writes Tang poems."""
