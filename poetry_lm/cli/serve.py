"""``poetry-lm serve``: the web page and the JSON API (FastAPI on uvicorn)."""

from __future__ import annotations

import socket

import click

from poetry_lm.errors import run_or_exit
from poetry_lm.options import model_option, set_threads, threads_option
from poetry_lm.serve.batcher import MAX_WAIT

# the batching options, shared with the load script (which passes them to the server it starts)
window_option = click.option(
    "--window",
    type=click.FloatRange(0, MAX_WAIT),  # the batcher waits no longer after the first request
    default=0.015,
    show_default=True,
    help="Seconds to wait for another request to decode in the same batch.",
)
max_rows_option = click.option(
    "--max-rows",
    type=click.IntRange(1, 4096),
    default=256,
    show_default=True,
    help="Decoding rows that close a batch without waiting (1: no batching).",
)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@model_option
@window_option
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=20.0,
    show_default=True,
    help="Seconds a request may take before it is cut off (408).",
)
@max_rows_option
@threads_option
def serve_command(host, port, checkpoint, window, timeout, max_rows, threads):
    """Serve the page at / and the API under /api (docs at /docs). The model is loaded once."""
    set_threads(threads)
    import uvicorn

    try:  # fail fast, in one sentence, before the model loads
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        socket.create_server((host, port), family=family).close()
    except OSError as err:
        raise click.ClickException(f"cannot listen on {host}:{port}: {err.strerror}") from None

    from poetry_lm.serve.app import create_app

    app = run_or_exit(create_app, checkpoint, window=window, timeout=timeout, max_rows=max_rows)
    click.echo(f"poetry_lm: the page at http://{host}:{port}/, the API docs at /docs", err=True)
    # keep-alive past uvicorn's 5 s: a busy server must not close a connection whose next
    # request is already waiting to be read
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=60)
