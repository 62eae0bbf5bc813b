"""``poetry-lm serve``: the web page and the JSON API (FastAPI on uvicorn). The command lives
with the service, so that the command line (``poetry_lm.cli``) never imports it."""

from __future__ import annotations

import socket

import click

from poetry_lm.errors import run_or_exit
from poetry_lm.options import (
    batch_rows_option,
    model_option,
    option_from,
    set_threads,
    threads_option,
    window_option,
)
from poetry_lm.serving import ServeSettings
from poetry_lm.usage import settings_or_usage_error

SECONDS = click.FloatRange(0, min_open=True)
timeout_option = option_from(ServeSettings, "timeout", type=SECONDS)
read_timeout_option = option_from(ServeSettings, "read_timeout", type=SECONDS)
shutdown_timeout_option = option_from(ServeSettings, "shutdown_timeout", type=SECONDS)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@model_option
@window_option
@timeout_option
@read_timeout_option
@shutdown_timeout_option
@batch_rows_option
@threads_option
def serve_command(host, port, checkpoint, threads, **values):
    """Serve the page at / and the API under /api (docs at /docs). The model is loaded once."""
    settings = settings_or_usage_error(ServeSettings, **values)
    set_threads(threads)
    try:  # fail fast, in one sentence, before the model loads
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        socket.create_server((host, port), family=family).close()
    except OSError as err:
        raise click.ClickException(f"cannot listen on {host}:{port}: {err.strerror}") from None

    # the app is built first, so that a bad checkpoint is one sentence; imported here, so
    # that --help does not load FastAPI
    from poetry_lm.serve.app import create_app
    from poetry_lm.serve.server import serve

    app = run_or_exit(create_app, checkpoint, settings)
    click.echo(f"poetry_lm: the page at http://{host}:{port}/, the API docs at /docs", err=True)
    serve(app, host, port, settings)
