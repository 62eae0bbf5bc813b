"""The poet: a checkpoint loaded once, and everything asked of it (write poems for a
:class:`~poetry_lm.request.PoemRequest`, rewrite a verse, score a poem). The command
line, the API and the lab tools all go through a :class:`Writer`.

Errors a user can cause are ``SettingError`` (naming the request's field at fault) or another
``ValueError`` with one sentence.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import torch

from poetry_lm.decoding.loop import GeneratedPoem, candidates
from poetry_lm.decoding.rerank import check_reader, rerank
from poetry_lm.decoding.rewrite import Rewritten, rewrite, verse_parts
from poetry_lm.decoding.select import select
from poetry_lm.evaluation.coherence import Scorer
from poetry_lm.evaluation.score import score_poem
from poetry_lm.model.checkpoint import load_model
from poetry_lm.model.errors import CheckpointError
from poetry_lm.model.lm import PoetryLM
from poetry_lm.model.stepper import Stepper
from poetry_lm.paths import COHERENCE_MODEL, SHIPPED_MODEL
from poetry_lm.request import PoemRequest, Sampling, check_known
from poetry_lm.settings import SettingError, literal
from poetry_lm.text.normalise import read_poem

# Poems are decoded in batches of at most this many rows (poems × best_of or beam), so memory
# stays bounded whatever n and the start count ask.
BATCH_ROWS = 256


def poem_seeds(seed: int | None, count: int) -> list[int]:
    """One seed per poem, drawn at once from ``seed`` (None: 63 fresh random bits): a poem
    depends on its start and its seed only, so batches give the poems one batch would."""
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8)) >> 1)
    return torch.randint(0, 2**62, (count,), generator=generator).tolist()


class Writer:
    """A checkpoint loaded once (raises CheckpointError where it cannot be read)."""

    def __init__(self, checkpoint: Path | str = SHIPPED_MODEL):
        self.checkpoint = Path(checkpoint)
        self.model, self.table, self.saved = load_model(checkpoint)
        self.readers: dict[str, PoetryLM] = {}  # rerank readers, by path, loaded once
        self.scorers: dict[str, Scorer] = {}  # coherence scorers, by path, loaded once

    @cached_property
    def step(self) -> Stepper:
        """The model packed for writing, once (~2 s); scoring needs none. Raises ValueError for
        a backward model (it reads poems right to left, so it cannot write them)."""
        return Stepper(self.model)

    def check(self, request: PoemRequest) -> PoemRequest:
        """The request as the model reads it (:meth:`PoemRequest.check`), its rerank reader
        loaded. Raises SettingError naming the field at fault."""
        request = request.check(self.table)
        if request.rerank_with:
            self.reader(request.rerank_with)
        if request.select == "coherence":
            self.scorer(request.coherence_model)
        return request

    def scorer(self, path: str | None) -> Scorer:
        """The coherence scorer at ``path`` (None: models/coherence.pt), loaded once. Raises
        SettingError (naming ``coherence_model``) where it cannot be read or was trained on
        another vocabulary than this model's."""
        path = str(path or COHERENCE_MODEL)
        if path not in self.scorers:
            try:
                scorer = Scorer(path)
            except CheckpointError as err:
                message = "{select} coherence needs a coherence scorer, but " + literal(str(err))
                raise SettingError(message, "coherence_model") from None
            if scorer.table.tokens != self.table.tokens:
                raise SettingError(
                    f"the coherence scorer {literal(path)} was trained on another vocabulary "
                    "than the model: give {coherence_model} one trained for it",
                )
            self.scorers[path] = scorer
        return self.scorers[path]

    def reader(self, path: str) -> PoetryLM:
        """The backward model at ``path``, loaded once. Raises CheckpointError where it cannot
        be read, SettingError (naming ``rerank_with``) where it is no backward model of this
        model's vocabulary."""
        if path not in self.readers:
            reader, reader_table, _ = load_model(path)
            try:
                check_reader(reader, reader_table, self.table, f"checkpoint {path}")
            except ValueError as err:
                raise SettingError(literal(str(err)), "rerank_with") from None
            self.readers[path] = reader
        return self.readers[path]

    def write(self, request: PoemRequest) -> list[GeneratedPoem]:
        """The request's poems: ``n`` per start, in order."""
        return [poem for batch in self.batches(request) for poem in batch]

    def batches(
        self, request: PoemRequest, max_rows: int | None = None
    ) -> Iterator[list[GeneratedPoem]]:
        """The request's poems, a batch of at most ``max_rows`` rows (BATCH_ROWS) at a time, each
        batch as soon as it is written."""
        request = self.check(request)
        rows = [s for s in request.starts or ("",) for _ in range(request.n)]
        seeds = poem_seeds(request.seed, len(rows))
        per_batch = max(1, (max_rows or BATCH_ROWS) // request.width)
        for first in range(0, len(rows), per_batch):
            yield self.write_rows(
                request, rows[first : first + per_batch], seeds[first : first + per_batch]
            )

    def write_rows(
        self, request: PoemRequest, starts: list[str], seeds: list[int]
    ) -> list[GeneratedPoem]:
        """One poem per start, poem i drawn from ``seeds[i]``, for a request already checked
        (:meth:`check`), all in one batch: the best of each poem's candidates."""
        found = candidates(self.step, self.table, request, starts, seeds)
        if request.select != "score":
            scorer = self.scorer(request.coherence_model) if request.select == "coherence" else None
            return select(found, request.select, scorer)
        reader = self.reader(request.rerank_with) if request.rerank_with else None
        return rerank(found, reader, self.table, request.rerank_weight)

    def read(self, text: str, what: str = "poem") -> str:
        """A user's poem by the one text rule (full-width marks, simplified script only for the
        characters the model lacks); raises PoemTextError (a ValueError) naming ``what``."""
        return read_poem(text, self.table.index, what)

    def rewrite(
        self,
        text: str,
        line: int,
        n: int = 4,
        sampling: Sampling = Sampling(),
        seed: int | None = None,
    ) -> list[Rewritten]:
        """Up to ``n`` new versions of verse ``line`` (0-based) of ``text``, likeliest poem
        first: :func:`poetry_lm.decoding.rewrite.rewrite`. Raises SettingError naming ``text``
        for a character the model lacks, ``line`` for a verse it has not."""
        text = self.read(text)
        self.check_rewrite(text, line, sampling)
        generator = torch.Generator()
        generator.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8)) >> 1)
        return rewrite(self.step, self.table, text, line, n, sampling, generator)

    def check_rewrite(self, text: str, line: int, sampling: Sampling) -> None:
        """A rewrite's input (``text`` already read): SettingError naming ``text`` for a
        character the model lacks, ``line`` for a verse it has not, or the sampling field."""
        check_known(self.table, text, "text")
        sampling.check()
        try:
            verse_parts(text, line)
        except ValueError as err:
            raise SettingError(literal(str(err)), "line") from None

    def score(self, text: str):
        """As ``poetry-lm score``: a character the model lacks is scored as ``<unk>``."""
        return score_poem(self.model, self.table, text)
