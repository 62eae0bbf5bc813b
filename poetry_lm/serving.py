"""The web service's settings, read by both ``poetry-lm serve`` (its options) and the app
(:func:`poetry_lm.serve.app.create_app`), so that each default and limit is written once."""

from __future__ import annotations

from dataclasses import dataclass

from poetry_lm.settings import SettingError, setting

# Seconds a batch waits after its first request at most: a window longer than this could never
# be waited, so none is accepted
MAX_WAIT = 0.1
# The most decoding rows a batch may wait for before it is closed
MAX_BATCH_ROWS = 4096


@dataclass(frozen=True)
class ServeSettings:
    window: float = setting(
        0.015, "Seconds to wait for another request to decode in the same batch."
    )
    timeout: float = setting(20.0, "Seconds a request may take before it is cut off (408).")
    read_timeout: float = setting(
        10.0,
        "Seconds a client may take to send a request's body before it is refused (408) and "
        "its connection closed.",
    )
    shutdown_timeout: float = setting(
        5.0,
        "Seconds a shutdown (Ctrl-C, SIGTERM) waits for the requests in flight before it "
        "cuts them off.",
    )
    batch_rows: int = setting(
        256, "Decoding rows that close a batch without waiting (1: no batching)."
    )

    def __post_init__(self):
        if not 0 <= self.window <= MAX_WAIT:
            raise SettingError(f"{{window}} must be in [0, {MAX_WAIT}] seconds")
        for name in ("timeout", "read_timeout", "shutdown_timeout"):
            if not getattr(self, name) > 0:
                raise SettingError(f"{{{name}}} must be more than 0 seconds")
        if not 1 <= self.batch_rows <= MAX_BATCH_ROWS:
            raise SettingError(f"{{batch_rows}} must be in [1, {MAX_BATCH_ROWS}]")
