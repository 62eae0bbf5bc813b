"""A run folder: ``last.pt`` (all a run needs to continue), ``best.pt`` (the best weights by
validation perplexity), ``metrics.json`` and ``training.png``, and a ``.lock`` that lets one
process at a time train into it.

Checkpoints are written atomically (a temporary file, then a rename), so a killed save leaves at
most a temporary file, which the next run removes.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from poetry_lm.model.checkpoint import (
    CheckpointError,
    checked_config,
    read_checkpoint,
    remove_stale_temporaries,
)
from poetry_lm.train.resume_checks import training_state_fault

# what last.pt holds beside a model's weights, vocabulary and config, so that a run can continue
TRAINING_STATE = ("train", "optimizer", "progress", "history", "rng")


class RunFolder:
    """The folder ``out``, claimed for this run: created if missing, checked writable and locked
    by the main process (``is_main``; the others only read it).

    Raises CheckpointError with the OS's reason (a file in the way, a read-only mount, a full
    disk), having removed what it made, and when another process holds the lock. Temporary
    files of a killed save are removed."""

    def __init__(self, out: Path | str, is_main: bool = True):
        self.path = Path(out)
        self.last, self.best = self.path / "last.pt", self.path / "best.pt"
        self.is_main = is_main
        self.made = self.not_yet_there()  # what this start creates: removed if it fails
        self.lock = None
        if is_main:
            self.lock = self.claim()

    def not_yet_there(self) -> list[Path]:
        """What claiming the folder will create (the main process claims): its lock file and
        the folders missing on the way to it, innermost first."""
        made, path = [], self.path / ".lock"
        while self.is_main and not path.exists() and path != path.parent:
            made.append(path)
            path = path.parent
        return made

    def claim(self):
        """Create the folder, lock it for this process and remove stale temporaries. A failure
        (a file in the way, a read-only mount, a full disk) removes what this start made."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = open(self.path / ".lock", "a+")  # noqa: SIM115 - held for the run's lifetime
        except OSError as err:
            raise self.unusable(err) from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise CheckpointError(
                f"{self.path} is in use by another training run (pid {holder}); wait for it or "
                "choose another --out"
            ) from None
        self.lock = lock
        try:  # on a full disk, the first write that fails
            lock.seek(0)
            lock.truncate()
            lock.write(str(os.getpid()))
            lock.flush()
        except OSError as err:
            raise self.unusable(err) from None
        for path in (self.last, self.best):
            remove_stale_temporaries(path)
        return lock

    def unusable(self, err: OSError) -> CheckpointError:
        """Undo this start (``abandon``) and say why the folder cannot be used."""
        self.abandon()
        return CheckpointError(f"cannot use {self.path} as a run folder ({err.strerror or err})")

    def abandon(self) -> None:
        """Undo a start that failed before training began: release the lock, and remove the lock
        file and the folders this start created, where nothing else was put in them since. A
        lock file that was there before stays, as after any run."""
        lock_file = self.path / ".lock"
        if self.lock is not None and lock_file in self.made:
            lock_file.unlink(missing_ok=True)  # while still held, so no other run holds it
        self.release()
        for folder in self.made:
            if folder == lock_file:
                continue
            try:
                folder.rmdir()
            except FileNotFoundError:  # never made: a start that failed on the way to it
                continue
            except OSError:  # not empty: left as it is, and the folders above it
                break

    def release(self) -> None:
        """Unlock the folder (the OS does it too when the process ends, however it ends)."""
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def start_from(self, resume: bool) -> dict | None:
        """What the run starts from: ``last.pt`` when resuming (see ``read_last``), else nothing,
        and then no ``last.pt`` may be there (CheckpointError: a new run would overwrite it)."""
        if resume:
            return self.read_last()
        if self.last.exists():
            raise CheckpointError(
                f"{self.last} exists: pass --resume to continue it or choose another --out"
            )
        return None

    def read_last(self) -> dict:
        """``last.pt`` with its training state, or CheckpointError saying why it cannot resume.

        It is checked as ``load_model`` checks a model (``checked_config``), and its training
        state too (``training_state_fault``), before anything is built: a run resumes only from
        a checkpoint whose every part loads, so its saves (``best.pt`` among them) are usable."""
        if not self.last.exists():
            raise CheckpointError(f"{self.last} does not exist: there is no run to resume")
        ckpt = read_checkpoint(self.last)
        missing = [key for key in TRAINING_STATE if key not in ckpt]
        if missing:
            raise CheckpointError(
                f"{self.last} holds no training state ({', '.join(missing)} missing): it is "
                "a best.pt or a shipped model, which can be evaluated but not resumed"
            )
        problem = training_state_fault(ckpt, checked_config(ckpt, self.last))
        if problem:
            raise CheckpointError(f"checkpoint {self.last} cannot be resumed: {problem}")
        return ckpt

    def best_is_behind(self, best_step: int) -> bool:
        """Whether ``best.pt`` lacks the weights of step ``best_step``: a run killed between
        writing last.pt and best.pt, whose last.pt then holds them."""
        try:
            saved = read_checkpoint(self.best)["progress"].get("best_step")
        except CheckpointError:
            saved = None
        return saved != best_step

    def saved_step(self) -> str:
        """The step of the last save of ``last.pt``, or "none yet"."""
        try:
            return str(read_checkpoint(self.last)["progress"]["global_step"])
        except (CheckpointError, KeyError):
            return "none yet"
