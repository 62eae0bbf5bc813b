"""``python -m poetry_lm.loadtest``: the web service's load script (see
:mod:`poetry_lm.tools.loadtest`; also ``poetry-lm loadtest``)."""

from poetry_lm.tools.loadtest import loadtest_command

if __name__ == "__main__":
    loadtest_command()
