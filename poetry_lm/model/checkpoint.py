"""Self-contained checkpoints: config, vocabulary, weights and training state in one file.

Only plain data and tensors are stored (no pickled classes), so loading uses
``torch.load(..., weights_only=True)``; writes go to a temporary file that is then renamed,
so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import glob
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from poetry_lm.model.lm import ModelConfig, PoetryLM, uninitialised
from poetry_lm.paths import missing_hint
from poetry_lm.text.vocab import REQUIRED, CharTable

FORMAT = "poetry_lm/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, with a one-sentence reason."""


def remove_stale_temporaries(path: Path | str) -> list[Path]:
    """Delete the temporary files an earlier save of ``path`` left when it was killed (SIGKILL,
    power loss: no handler runs). Only one process writes a run folder (the trainer holds its
    lock), so any such file is stale. Returns the files removed."""
    path = Path(path)
    stale = list(path.parent.glob(glob.escape(path.name) + "*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def save_checkpoint(path: Path | str, model: PoetryLM, vocab: list[str], **extra: Any) -> None:
    """Atomically write model config, vocabulary, weights and any plain-data ``extra``.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the file is
    renamed over ``path``: a reader sees the old checkpoint or the new one, never a part.
    Raises CheckpointError (one sentence, the OS's reason) when the file cannot be written.
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "config": asdict(model.config),
        "vocab": list(vocab),
        "model": model.state_dict(),
        **extra,
    }
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_folder(path.parent)  # the rename itself survives a power loss
    except (OSError, RuntimeError) as err:  # torch reports a failed write as a RuntimeError
        raise CheckpointError(f"cannot write checkpoint {path} ({_reason(err)})") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _reason(err: BaseException) -> str:
    """The first OS reason in an exception chain (torch wraps ENOSPC in a RuntimeError)."""
    seen = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    text = str(err)
    if "No space" in text or "failed writing" in text:
        return "the disk is full or the write failed"
    return text.splitlines()[0] if text else type(err).__name__


def read_checkpoint(path: Path | str) -> dict[str, Any]:
    """The raw checkpoint dict (plain data and tensors only), or CheckpointError."""
    if not str(path):
        raise CheckpointError("no checkpoint path was given")
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist{missing_hint(path)}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a regular file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged or foreign file
        raise CheckpointError(
            f"checkpoint {path} is damaged or not a poetry_lm checkpoint ({type(err).__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a poetry_lm checkpoint")
    return payload


def check_vocabulary(vocab: Any, size: int) -> str | None:
    """Why ``vocab`` cannot be the vocabulary of a model with ``size`` output rows, or None."""
    if not isinstance(vocab, list) or not all(isinstance(tok, str) and tok for tok in vocab):
        return "its vocabulary is not a list of non-empty strings"
    if len(vocab) != size:
        return f"its vocabulary has {len(vocab)} tokens but its weights {size}"
    if len(set(vocab)) != len(vocab):
        twice = next(tok for i, tok in enumerate(vocab) if tok in vocab[:i])
        return f"its vocabulary holds {twice!r} twice"
    missing = [tok for tok in REQUIRED if tok not in vocab]
    if missing:
        return "its vocabulary lacks the special tokens " + ", ".join(missing)
    return None


def load_model(path: Path | str) -> tuple[PoetryLM, CharTable, dict[str, Any]]:
    """Checkpoint → (model in eval mode, its vocabulary, the raw checkpoint).

    Everything is checked here, once: the config builds a model, the weights have its names and
    shapes and are finite, and the vocabulary is as long as the output layer, unique, strings,
    with the special tokens. Any failure is one CheckpointError naming the file and the fault.
    """
    payload = read_checkpoint(path)

    def fault(reason: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} cannot be used: {reason}")

    weights = payload.get("model")
    if not isinstance(weights, dict) or not all(
        isinstance(t, torch.Tensor) for t in weights.values()
    ):
        raise fault("it holds no weights")
    try:
        config = ModelConfig.from_saved(payload["config"])
        # the shapes are checked on the meta device first: a forged config must not make this
        # process allocate a model of any size it names
        with torch.device("meta"), uninitialised():
            shapes = {name: t.shape for name, t in PoetryLM(config).state_dict().items()}
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        reason = str(err).splitlines()[0]
        raise fault(f"it does not match this version of poetry_lm ({reason})") from None
    if set(shapes) != set(weights):
        odd = sorted(set(shapes) ^ set(weights))[0]
        raise fault(f"its weights do not match its config (the weight {odd})")
    wrong = next((name for name in shapes if weights[name].shape != shapes[name]), None)
    if wrong is not None:
        raise fault(
            f"its weight {wrong} has shape {tuple(weights[wrong].shape)}, its config says "
            f"{tuple(shapes[wrong])}"
        )
    # a float64 sum of float32 weights cannot overflow: it is finite exactly when they all are
    bad = next(
        (name for name, t in weights.items() if not torch.isfinite(t.sum(dtype=torch.float64))),
        None,
    )
    if bad is not None:
        raise fault(f"its weight {bad} holds NaN or infinite values")
    problem = check_vocabulary(payload.get("vocab"), config.vocab_size)
    if problem:
        raise fault(problem)
    with uninitialised():  # every weight is the checkpoint's: none is drawn first
        model = PoetryLM(config)
    model.load_state_dict(weights)
    return model.eval(), CharTable(payload["vocab"]), payload


def trained_without_titles(payload: dict[str, Any]) -> bool:
    """Whether a checkpoint's saved train settings say ``title_share`` 0: its model never read a
    title in training, though its vocabulary may hold ``<sep>``. A checkpoint saved before the
    setting existed does not say (False)."""
    train = payload.get("train")
    return isinstance(train, dict) and train.get("title_share") == 0
