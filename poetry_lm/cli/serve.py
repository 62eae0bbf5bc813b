"""``poetry-lm serve``: the web page and the JSON API (FastAPI on uvicorn)."""

from __future__ import annotations

import socket

import click

from poetry_lm.cli.common import (
    batch_rows_option,
    model_option,
    option_from,
    run_or_exit,
    set_threads,
    settings_or_usage_error,
    threads_option,
    window_option,
)
from poetry_lm.serving import ServeSettings

timeout_option = option_from(ServeSettings, "timeout", type=click.FloatRange(0, min_open=True))


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@model_option
@window_option
@timeout_option
@batch_rows_option
@threads_option
def serve_command(host, port, checkpoint, window, timeout, batch_rows, threads):
    """Serve the page at / and the API under /api (docs at /docs). The model is loaded once."""
    settings = settings_or_usage_error(
        ServeSettings, window=window, timeout=timeout, batch_rows=batch_rows
    )
    set_threads(threads)
    import uvicorn

    try:  # fail fast, in one sentence, before the model loads
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        socket.create_server((host, port), family=family).close()
    except OSError as err:
        raise click.ClickException(f"cannot listen on {host}:{port}: {err.strerror}") from None

    # the one import of the serving layer, here so that the command line never loads it
    # otherwise: the app is built first, so that a bad checkpoint is one sentence
    from poetry_lm.serve.app import create_app

    app = run_or_exit(create_app, checkpoint, settings)
    click.echo(f"poetry_lm: the page at http://{host}:{port}/, the API docs at /docs", err=True)
    # keep-alive past uvicorn's 5 s: a busy server must not close a connection whose next
    # request is already waiting to be read
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=60)
