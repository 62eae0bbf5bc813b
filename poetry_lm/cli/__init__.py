"""The ``poetry-lm`` command group (also ``python -m poetry_lm``).

Each command lives in its own module and is imported only when it runs, so ``generate`` never
pays for what ``train`` or the tools import (fastNLP, matplotlib): click's lazy-group pattern.
"""

from __future__ import annotations

import importlib

import click

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


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup)
def main():
    """poetry_lm: a character-level LSTM that writes Tang poems."""
