"""Self-contained checkpoints: config, vocabulary, weights and training state in one file.

Only plain data and tensors are stored (no pickled classes), so loading uses
``torch.load(..., weights_only=True)``; writes go to a temporary file that is then renamed,
so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from poetry_lm.model.lm import ModelConfig, PoetryLM
from poetry_lm.paths import missing_hint
from poetry_lm.text.vocab import CharTable

FORMAT = "poetry_lm/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, with a one-sentence reason."""


def save_checkpoint(path: Path | str, model: PoetryLM, vocab: list[str], **extra: Any) -> None:
    """Atomically write model config, vocabulary, weights and any plain-data ``extra``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": asdict(model.config),
        "vocab": list(vocab),
        "model": model.state_dict(),
        **extra,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checkpoint(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist{missing_hint(path)}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged or foreign file
        raise CheckpointError(
            f"checkpoint {path} is damaged or not a poetry_lm checkpoint ({type(err).__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a poetry_lm checkpoint")
    return payload


def load_model(path: Path | str) -> tuple[PoetryLM, CharTable, dict[str, Any]]:
    """Checkpoint → (model in eval mode, its vocabulary, the raw checkpoint)."""
    payload = read_checkpoint(path)
    try:
        model = PoetryLM(ModelConfig(**payload["config"]))
        model.load_state_dict(payload["model"])
        table = CharTable(payload["vocab"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"checkpoint {path} does not match this version of poetry_lm ({err})"
        ) from None
    return model.eval(), table, payload
