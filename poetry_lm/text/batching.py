"""Poems → tensors: front-padded training windows, poem streams, and whole-poem evaluation
batches."""

from __future__ import annotations

import heapq
from collections.abc import Iterator

import numpy as np
import torch


def make_windows(poems: list[list[int]], seq_len: int, seq_step: int, pad: int) -> np.ndarray:
    """Encoded poems (begin … end) → an (N, seq_len) int array of training windows.

    A poem shorter than ``seq_len`` is padded in front, so its end token sits in the last
    column; a longer one is cut into ``seq_len`` windows every ``seq_step`` tokens, the last
    window aligned to the poem's end so that no token is left out.
    """
    if not 2 <= seq_len or not 1 <= seq_step <= seq_len:
        raise ValueError("need seq_len >= 2 and 1 <= seq_step <= seq_len")
    windows = []
    for ids in poems:
        if len(ids) <= seq_len:
            windows.append([pad] * (seq_len - len(ids)) + ids)
            continue
        starts = list(range(0, len(ids) - seq_len + 1, seq_step))
        if starts[-1] != len(ids) - seq_len:
            starts.append(len(ids) - seq_len)
        windows.extend(ids[s : s + seq_len] for s in starts)
    return np.asarray(windows, dtype=np.int64).reshape(-1, seq_len)


def window_batches(
    windows: np.ndarray, batch_size: int, order: np.ndarray, start: int = 0
) -> Iterator[torch.Tensor]:
    """Batches of windows, time-major (T, B), following ``order`` from batch ``start`` on."""
    for first in range(start * batch_size, len(order), batch_size):
        yield torch.from_numpy(windows[order[first : first + batch_size]].T.copy())


def make_streams(
    poems: list[list[int]], batch_size: int, pad: int, rng: np.random.Generator
) -> np.ndarray:
    """Encoded poems laid end to end in ``batch_size`` columns, in a random order: an (L, B)
    int array.

    Each poem is followed by one pad, which resets the recurrent state. Poems are dealt longest
    first, each to the currently shortest column, so the columns end within one short poem of
    each other; then each column's poems are shuffled. Read in consecutive chunks with the state
    carried over (truncated BPTT), every token is scored exactly once, with all of its poem
    before it as context, and every chunk but the last is full. (Dealt in random order instead,
    a column could end a long poem later than the others, and the last dozen chunks of an epoch
    would hold one or two poems each: a dozen noisy full-size Adam steps.)
    """
    # equal lengths in random order
    order = sorted(rng.permutation(len(poems)), key=lambda i: -len(poems[i]))
    columns: list[list[int]] = [[] for _ in range(batch_size)]  # poem indices per column
    shortest = [(0, b) for b in range(batch_size)]  # heap of (tokens so far, column)
    for i in order:
        length, b = heapq.heappop(shortest)
        columns[b].append(i)
        heapq.heappush(shortest, (length + len(poems[i]) + 1, b))
    out = np.full((max(length for length, _ in shortest), batch_size), pad, dtype=np.int64)
    for b, column in enumerate(columns):
        rng.shuffle(column)
        tokens = [t for i in column for t in (*poems[i], pad)]
        out[: len(tokens), b] = tokens
    return out


def stream_chunks(streams: np.ndarray, seq_len: int, start: int = 0) -> Iterator[torch.Tensor]:
    """Consecutive (seq_len, B) slices of the streams from chunk ``start`` on, overlapping by one
    row: the last input row of one chunk is followed by the first input row of the next."""
    for first in range(start * (seq_len - 1), len(streams) - 1, seq_len - 1):
        yield torch.from_numpy(streams[first : first + seq_len].copy())


def poem_batches(
    poems: list[list[int]], pad: int, max_tokens: int = 16384
) -> Iterator[torch.Tensor]:
    """Whole poems grouped by length into (T, B) batches padded at the end, each poem once.

    Sorting by length keeps padding small; ``max_tokens`` bounds T × B of a batch.
    """
    order = sorted(range(len(poems)), key=lambda i: len(poems[i]))
    batch: list[list[int]] = []
    for i in order:
        longest = len(poems[i])  # sorted: the newest poem is the longest of the batch
        if batch and longest * (len(batch) + 1) > max_tokens:
            yield pad_right(batch, pad)
            batch = []
        batch.append(poems[i])
    if batch:
        yield pad_right(batch, pad)


def pad_right(batch: list[list[int]], pad: int) -> torch.Tensor:
    """Encoded poems → one (T, B) batch, each poem a column padded at its end."""
    length = max(len(ids) for ids in batch)
    out = torch.full((length, len(batch)), pad, dtype=torch.long)
    for b, ids in enumerate(batch):
        out[: len(ids), b] = torch.tensor(ids)
    return out
