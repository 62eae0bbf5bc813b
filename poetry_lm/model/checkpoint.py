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

from poetry_lm.model.errors import CheckpointError
from poetry_lm.model.lm import ModelConfig, PoetryLM, uninitialised
from poetry_lm.paths import missing_hint
from poetry_lm.text.vocab import REQUIRED, CharTable

FORMAT = "poetry_lm/1"


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

    Everything is checked first, by ``checked_config``; any failure is one CheckpointError
    naming the file and the fault.
    """
    payload = read_checkpoint(path)
    model = PoetryLM(checked_config(payload, path))
    model.load_state_dict(payload["model"])
    return model.eval(), CharTable(payload["vocab"]), payload


def checked_config(payload: dict[str, Any], path: Path | str) -> ModelConfig:
    """The model config of a checkpoint whose weights and vocabulary fit it, or CheckpointError
    naming ``path`` and the fault. Nothing is allocated: the config's sizes are compared with
    the saved tensors' shapes before even a model on the meta device is built (whose shapes
    are then compared one by one), so a forged config cannot make the process build what it
    names. The weights must be dense float32 CPU tensors with finite values (``tensor_fault``),
    and the vocabulary as long as the output layer, unique, strings, with the special tokens.
    """

    def fault(reason: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} cannot be used: {reason}")

    weights = payload.get("model")
    if not isinstance(weights, dict) or not weights:
        raise fault("it holds no weights")
    odd = next((name for name, t in weights.items() if not isinstance(t, torch.Tensor)), None)
    if odd is not None:
        raise fault(f"its weight {odd} is not a tensor")
    try:
        config = ModelConfig.from_saved(payload["config"])
        problem = sizes_fault(config, weights)
        expected = None if problem else meta_model(config).state_dict()
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        reason = str(err).splitlines()[0]
        raise fault(f"it does not match this version of poetry_lm ({reason})") from None
    problem = problem or tensors_fault(weights, expected, "weight")
    problem = problem or check_vocabulary(payload.get("vocab"), config.vocab_size)
    if problem:
        raise fault(problem)
    return config


def meta_model(config: ModelConfig) -> PoetryLM:
    """The model ``config`` describes, on the meta device: its names and shapes, no memory."""
    with torch.device("meta"), uninitialised():  # no init: on meta it imports torch's compiler
        return PoetryLM(config)


def sizes_fault(config: ModelConfig, weights: dict[str, torch.Tensor]) -> str | None:
    """Why ``config`` cannot describe ``weights``, judged by sizes alone, or None: each of its
    sizes must be a dimension of some saved weight, and it cannot have more layers than there
    are weights. Checked before a meta model is built: a forged ``num_layers`` of millions
    would take hours even there (5,000 layers take 39 s)."""
    dims = {size for t in weights.values() for size in t.shape}
    for name in ("vocab_size", "embed_dim", "hidden_dim"):
        if getattr(config, name) not in dims:
            return (
                f"its config does not match the shapes of its weights ({name} "
                f"{getattr(config, name)} is the size of none)"
            )
    if config.num_layers > len(weights):
        return f"its config does not match its weights ({config.num_layers} layers)"
    return None


def tensors_fault(saved: Any, expected: dict[str, torch.Tensor], what: str) -> str | None:
    """Why ``saved`` cannot be loaded where the tensors ``expected`` (a meta model's state
    dict, say) stand, or None: the same names, and for each ``tensor_fault``. ``what`` names a
    tensor in the sentence ("weight")."""
    if not isinstance(saved, dict):
        return f"its {what}s are not a table of named tensors"
    if set(saved) != set(expected):
        odd = sorted(map(str, set(saved) ^ set(expected)))[0]
        return f"its {what}s do not match its model (the {what} {odd})"
    for name, like in expected.items():
        problem = tensor_fault(saved[name], like)
        if problem:
            return f"its {what} {name} {problem}"
    return None


def tensor_fault(t: Any, like: torch.Tensor) -> str | None:
    """Why ``t`` cannot stand where ``like`` stands, or None: it must be a dense (strided)
    tensor held in the file (CPU: a meta tensor holds no values), of ``like``'s dtype and shape,
    with finite values.

    The dtype is exact: poetry_lm writes float32 weights only (bfloat16 autocast computes in
    bfloat16 but keeps float32 weights), and ``load_state_dict`` would silently cast anything
    else, so a float16 or bfloat16 file, rounded by someone, would pass for the trained model,
    float64 would be rounded without a word and complex64 lose its imaginary part."""
    if not isinstance(t, torch.Tensor):
        return "is not a tensor"
    if t.layout != torch.strided:
        return f"is a {_plain(t.layout)} tensor, not a dense one"
    if t.device.type != "cpu":
        return f"is on the {t.device.type} device, not held in the file"
    if t.dtype != like.dtype:
        return f"is {_plain(t.dtype)}, not {_plain(like.dtype)}"
    if t.shape != like.shape:
        return f"has shape {tuple(t.shape)} where {tuple(like.shape)} belongs"
    # a float64 sum of float32 values cannot overflow: it is finite exactly when they all are
    if t.is_floating_point() and not torch.isfinite(t.sum(dtype=torch.float64)):
        return "holds NaN or infinite values"
    return None


def _plain(kind: Any) -> str:
    return str(kind).removeprefix("torch.")  # torch.float32 → float32


def trained_without_titles(payload: dict[str, Any]) -> bool:
    """Whether a checkpoint's saved train settings say ``title_share`` 0: its model never read a
    title in training, though its vocabulary may hold ``<sep>``. A checkpoint saved before the
    setting existed does not say (False)."""
    train = payload.get("train")
    return isinstance(train, dict) and train.get("title_share") == 0
