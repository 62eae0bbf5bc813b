"""The service with the shipped model, loaded once for all the serve tests (a plain module, not
a conftest.py: ``conftest`` is already the name the other tests import their helpers from)."""

from functools import cache


@cache
def shared_app():
    from poetry_lm.serve.app import create_app

    return create_app()
