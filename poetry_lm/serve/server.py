"""Running the app with uvicorn: ``serve`` for ``poetry-lm serve``, ``running`` for tests.

Three deadlines keep a client that goes quiet from holding the server (docs/reliability.md):
the request's head (its line and headers) must arrive within ``read_timeout`` seconds of the
connection or of its first byte (:class:`HeadDeadline`; uvicorn itself closes only idle
keep-alive connections), its body within ``read_timeout`` too (``serve/guard.py``), and a
shutdown waits ``shutdown_timeout`` for the requests in flight.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from contextlib import contextmanager

import h11
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from poetry_lm.serving import ServeSettings

DEFAULTS = ServeSettings()


class HeadDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request head is not complete
    ``deadline`` seconds after it began: a connection opened and left silent, or a head sent
    in part (``GET / HTTP/1.1\\r\\nHost: a``) and never finished."""

    deadline = DEFAULTS.read_timeout
    head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.watch_head()

    def on_response_complete(self) -> None:  # the next request's head may have begun
        super().on_response_complete()
        self.watch_head()

    def connection_lost(self, exc) -> None:
        self.stop_watching()
        super().connection_lost(exc)

    def watch_head(self) -> None:
        """Arm the timer while the client owes a head (h11: IDLE), with bytes of it or none
        after a response (the keep-alive timer's case, which data cancels); stop it after."""
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            self.stop_watching()
        elif self.head_timer is None and (self.cycle is None or self.conn.trailing_data[0]):
            self.head_timer = self.loop.call_later(self.deadline, self.timeout_keep_alive_handler)

    def stop_watching(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None


def server_options(app: FastAPI, shutdown_timeout: float) -> dict:
    """uvicorn's options for ``app``: the head deadline, the app's own read time limit (the
    body guard's, ``app.state.read_timeout``), and a shutdown that waits ``shutdown_timeout``
    at most for the requests in flight (uvicorn's own default waits forever, on a client gone
    quiet too)."""
    deadline = {"deadline": app.state.read_timeout}
    protocol = type("HeadDeadline", (HeadDeadline,), deadline)
    # keep-alive past uvicorn's 5 s: a busy server must not close a connection whose next
    # request is already waiting to be read
    return dict(
        http=protocol,
        log_level="warning",
        timeout_keep_alive=60,
        timeout_graceful_shutdown=shutdown_timeout,
    )


def cut_off_quietly(record: logging.LogRecord) -> bool:
    """uvicorn's log, without the traceback of each request a shutdown cuts off: its line
    "Cancel 1 running task(s), timeout graceful shutdown exceeded" says so already."""
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


def serve(app: FastAPI, host: str, port: int, settings: ServeSettings = DEFAULTS) -> None:
    """Serve ``app`` on ``host``:``port`` until Ctrl-C or SIGTERM."""
    import uvicorn

    logging.getLogger("uvicorn.error").addFilter(cut_off_quietly)
    uvicorn.run(app, host=host, port=port, **server_options(app, settings.shutdown_timeout))


@contextmanager
def running(app: FastAPI):
    """Serve ``app`` with uvicorn on a free loopback port in a thread, for tests and the README
    screenshot → its base URL. Its lifespan is off: the app (and its decoding thread) outlives
    the server."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    options = server_options(app, DEFAULTS.shutdown_timeout)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        thread.join(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()
