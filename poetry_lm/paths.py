"""Where the shipped model and corpus are found, by one stated rule.

The rule, first match wins:

1. ``$POETRY_LM_DATA``, a folder holding ``models/poetry_lm.pt`` and ``corpus/tang.jsonl.xz``;
2. the source checkout this package sits in (``pip install -e .`` or running from a clone);
3. ``<sys.prefix>/share/poetry_lm``, where ``pip install .`` puts them (setup.cfg ``data_files``).

The 平水韵 table is package data (``prosody/pingshui.txt``) and needs no rule.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VAR = "POETRY_LM_DATA"
MODEL_FILE = "models/poetry_lm.pt"
CORPUS_FILE = "corpus/tang.jsonl.xz"
COHERENCE_FILE = "models/coherence.pt"  # the coherence scorer (evaluation/coherence.py)
SONG_FILE = "corpus/song.jsonl.xz"  # pretraining poems (corpus/README.md)
RULE = f"${ENV_VAR}, then the source checkout, then {Path(sys.prefix) / 'share' / 'poetry_lm'}"


def data_roots() -> list[Path]:
    """The folders searched, in order (see the module docstring)."""
    roots = [Path(os.environ[ENV_VAR])] if os.environ.get(ENV_VAR) else []
    return [
        *roots,
        Path(__file__).resolve().parent.parent,
        Path(sys.prefix) / "share" / "poetry_lm",
    ]


def data_path(relative: str) -> Path:
    """The first ``root / relative`` that exists, else the first candidate (reported missing
    later)."""
    candidates = [root / relative for root in data_roots()]
    return next((path for path in candidates if path.is_file()), candidates[0])


SHIPPED_MODEL = data_path(MODEL_FILE)
DEFAULT_CORPUS = data_path(CORPUS_FILE)
SONG_CORPUS = data_path(SONG_FILE)
COHERENCE_MODEL = data_path(COHERENCE_FILE)


def missing_hint(path: Path) -> str:
    """A sentence to add when a default data file is missing: where it was looked for."""
    if path in (SHIPPED_MODEL, DEFAULT_CORPUS, SONG_CORPUS, COHERENCE_MODEL):
        return f" (the default is looked up in {RULE})"
    return ""
