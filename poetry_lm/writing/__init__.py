"""One home for a request: the :class:`~poetry_lm.writing.writer.Writer`, a model loaded once
that writes what a :class:`~poetry_lm.request.PoemRequest` asks."""

from poetry_lm.writing.writer import Writer

__all__ = ["Writer"]
