"""The errors a user can cause, and the rule that turns one into a sentence.

A mistake of the user's (a setting out of range, a corpus or poem file that cannot be used, a
checkpoint that cannot be read, a file or disk at fault) raises one of the project's own error
types below. The commands and tools end such an error in one sentence on stderr and exit status
1, never a traceback; any other exception (numpy's or torch's ValueError, say) is a bug, and
keeps its traceback.
"""

from __future__ import annotations

import click

from poetry_lm.model.errors import CheckpointError
from poetry_lm.settings import SettingError
from poetry_lm.text.corpus import CorpusError

# SettingError covers KeywordError and UnknownCharacterError, CorpusError covers PoemTextError
USER_ERRORS = (SettingError, CorpusError, CheckpointError, OSError)


def run_or_exit(fn, *args, **kwargs):
    """Call fn; a user-caused error becomes one clear sentence and exit status 1."""
    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from None
