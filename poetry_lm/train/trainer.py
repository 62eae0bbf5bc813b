"""The training loop: windows or poem streams → Adam/SGD steps → validation each epoch → early
stopping.

Everything needed to continue lives in ``<out>/last.pt`` (weights, optimizer, epoch, the
position inside the epoch, RNG state, history); the best model by validation perplexity is
``<out>/best.pt``. Both are written atomically, ``last.pt`` first: a run killed at any moment
can be resumed, and resuming gives the same weights as a run never stopped (dropout off; see
docs/reliability.md). One process at a time may train into a run folder (a lock says so).
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict

import torch

from poetry_lm.evaluation.perplexity import perplexity
from poetry_lm.model.checkpoint import read_checkpoint, save_checkpoint
from poetry_lm.model.lm import PoetryLM
from poetry_lm.text.vocab import CharTable
from poetry_lm.train import distributed
from poetry_lm.train.config import TrainConfig, portable_corpus, run_config
from poetry_lm.train.data import EpochBatches, load_texts, vocabulary
from poetry_lm.train.metrics import write_metrics
from poetry_lm.train.model_setup import build_model, weight_average
from poetry_lm.train.progress import LossBlock, Progress
from poetry_lm.train.run_folder import RunFolder
from poetry_lm.train.schedule import continue_schedule, learning_rate

# train_loss is recorded per block of this many steps, at most ~100 points an epoch
STEP_POINTS_PER_EPOCH = 100


class Interrupted(KeyboardInterrupt):
    """Training stopped by a signal (Ctrl-C, SIGTERM, SIGHUP) after saving ``last.pt``."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Diverged(ValueError):
    """The loss (or the validation perplexity) is no longer a finite number."""


class Trainer:
    """One training run. ``__init__`` prepares it in named steps, ``fit`` runs it.

    Raises ``CheckpointError`` when ``<out>/last.pt`` exists and ``resume`` is false (or is
    missing or unreadable when it is true), ``CorpusError`` for an unreadable corpus and
    ``ValueError`` for settings that do not fit together.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        resume: bool = False,
        log: Callable[[str], None] = print,
        limits: dict | None = None,
    ):
        self.ctx = distributed.init(cfg.device)
        self.log = log if self.ctx.is_main else (lambda msg: None)
        self.folder = RunFolder(cfg.out_dir, self.ctx.is_main)
        try:
            ckpt = self.folder.start_from(resume)
            self.cfg = run_config(cfg, ckpt, limits, self.ctx.device.type, self.log)
            self.texts, self.titles = load_texts(self.cfg)
            self.vocab, model_cfg = vocabulary(self.cfg, self.texts["train"], ckpt)
            self.table = CharTable(self.vocab)
            self.model, self.loss, self.optimizer = build_model(
                self.cfg, model_cfg, self.ctx, self.table.pad
            )
            self.progress, self.history = self.restore(ckpt)
            self.averaged = weight_average(self.model, self.cfg.ema_decay, ckpt, self.log)
            self.batches = EpochBatches(
                self.cfg, self.table, self.texts, self.titles, self.model.config.direction
            )
            self.steps_per_epoch = self.batches.of_epoch(0)[1]
            total = self.batches.total_steps(self.steps_per_epoch)
            continue_schedule(self.cfg, self.progress, total, self.log)
            self.repair_best(ckpt)
        except BaseException:
            self.folder.abandon()
            raise
        # the last (or current) epoch's training throughput, for the history
        self.tokens_per_s = 0.0
        self.stop_signal: int | None = None  # set by a signal handler, acted on between steps

    def release(self) -> None:
        """Unlock the run folder; ``fit`` does it at its end, however it ends."""
        self.folder.release()

    def restore(self, ckpt: dict | None) -> tuple[Progress, list[dict]]:
        """Progress and history, fresh or from the checkpoint (whose weights, optimizer state
        and RNG state are loaded here too)."""
        progress, history = Progress(), []
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            progress, history = Progress.from_dict(ckpt["progress"]), ckpt["history"]
            torch.set_rng_state(ckpt["rng"])
        if self.ctx.world > 1:
            # different dropout masks on each rank
            seed = self.cfg.seed * 1009 + self.ctx.rank * 7919 + progress.global_step
            torch.manual_seed(seed)
        return progress, history

    def repair_best(self, ckpt: dict | None) -> None:
        """A run killed between writing last.pt and best.pt: last.pt holds the best weights
        (its ``best_step`` is its own step), so best.pt is written from them."""
        p = self.progress
        if ckpt is None or p.best_step != p.global_step:
            return
        if self.folder.best_is_behind(p.best_step):
            self.save_best()
            self.log(f"{self.folder.best} was not written before the run stopped; written now")

    # -- checkpoints ---------------------------------------------------------------
    def save(self, path, model: PoetryLM | None = None, **extra) -> None:
        if not self.ctx.is_main:
            return
        save_checkpoint(
            path,
            self.model if model is None else model,
            self.vocab,
            train={**asdict(self.cfg), "corpus": portable_corpus(self.cfg.corpus)},
            progress=self.progress.to_dict(),
            history=list(self.history),
            **extra,
        )

    def save_last(self) -> None:
        state = {"optimizer": self.optimizer.state_dict(), "rng": torch.get_rng_state()}
        if self.averaged is not None:
            state["averaged"] = self.averaged.state_dict()
        self.save(self.folder.last, **state)

    def save_best(self) -> None:
        """best.pt: the weights validation scored (the average, when one is kept)."""
        self.save(self.folder.best, self.scored_model())

    def scored_model(self) -> PoetryLM:
        return self.model if self.averaged is None else self.averaged.module

    # -- the loop ------------------------------------------------------------------
    def fit(self) -> dict:
        handlers = catch_signals(self.request_stop)  # before the first line a watcher awaits
        cfg, p = self.cfg, self.progress
        self.log_start()
        try:
            while p.epoch < cfg.max_epochs and p.bad_epochs < cfg.patience:
                out_of_time = self.train_epoch()
                if self.stop_signal is None and out_of_time:
                    budget = cfg.max_minutes
                    self.log(f"time budget of {budget} min spent; validating what there is")
                    self.end_epoch(partial=True)
                    break
                if self.stop_signal is None:
                    self.end_epoch()
                if self.stop_signal is not None:  # after a whole step, or a whole epoch's end
                    self.save_last()
                    name = signal.Signals(self.stop_signal).name
                    self.log(
                        f"interrupted: saved {self.folder.last} ({name}); continue with --resume"
                    )
                    raise Interrupted(self.stop_signal)
            return self.finish() if self.ctx.is_main else {}
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            distributed.finish(self.ctx)
            self.folder.release()

    def log_start(self) -> None:
        """Say what is trained, and warn of a warm-up too long for the run."""
        cfg = self.cfg
        n_params = sum(t.numel() for t in self.model.parameters())
        threads, world = torch.get_num_threads(), self.ctx.world
        self.log(
            f"vocabulary {len(self.vocab)}, {len(self.batches.encoded)} poems as {cfg.batching} "
            f"of {cfg.seq_len}, {self.steps_per_epoch} steps/epoch, {n_params / 1e6:.2f}M "
            f"parameters, {threads} thread(s) × {world} process(es) on {self.ctx.device}"
        )
        total = self.batches.total_steps(self.steps_per_epoch)
        if cfg.warmup_steps > total / 4:
            self.log(
                f"the warm-up ({cfg.warmup_steps} steps) is over a quarter of the run's {total} "
                "steps: the learning rate is reached late or never (see --warmup-steps)"
            )

    def request_stop(self, signum, frame) -> None:
        """A signal's handler: the first asks to stop after the current step (which then saves
        last.pt), a second stops at once (last.pt then holds the state of the last save)."""
        if self.stop_signal is not None:
            raise KeyboardInterrupt
        self.stop_signal = signum

    def train_epoch(self) -> bool:
        """One epoch (or the rest of one) of optimizer steps; the progress keeps its train loss.
        Returns whether it ended early because the time budget was spent."""
        cfg, p = self.cfg, self.progress
        batches, self.steps_per_epoch = self.batches.of_epoch(p.epoch, p.step_in_epoch)
        # the schedule's length: a pretraining run's phases differ, so it is fixed at the start
        total_steps = (
            p.total_steps if cfg.pretrain_epochs else cfg.max_epochs * self.steps_per_epoch
        )
        bar = progress_bar(
            batches, self.steps_per_epoch, p.step_in_epoch, p.epoch + 1, self.ctx.is_main
        )
        self.model.train()
        started = last_save = time.monotonic()
        elapsed0, tokens_seen = p.elapsed_s, 0
        # streams carry the state from chunk to chunk (restarting from zero after a resume)
        state = None
        block = LossBlock(max(1, self.steps_per_epoch // STEP_POINTS_PER_EPOCH))
        out_of_time = False
        for batch in bar:
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(cfg, p.global_step, total_steps, p.lr_anchor)
            nll, n, state = self.forward(batch, state)
            now = time.monotonic()
            over_budget = (
                cfg.max_minutes is not None and elapsed0 + now - started > cfg.max_minutes * 60
            )
            # one collective: global token count and summed NLL, whether any rank is out of
            # time, and whether any rank was asked to stop (so that all stop at the same step)
            total_nll, total_n, stop, interrupted = self.ctx.all_sum(
                [float(nll.detach()), n, float(over_budget), float(self.stop_signal is not None)]
            )
            self.optimize(nll, total_nll, total_n)
            p.add_step(total_nll, total_n, block)
            tokens_seen += total_n
            p.elapsed_s = elapsed0 + now - started
            speed = tokens_seen / max(now - started, 1e-9)
            bar.set_postfix(loss=f"{p.train_loss():.3f}", tok_s=f"{speed:.0f}", refresh=False)
            if now - last_save > cfg.save_every_minutes * 60:
                self.save_last()
                last_save = now
            if interrupted:
                self.stop_signal = self.stop_signal or signal.SIGTERM  # another rank's signal
                break
            if stop:
                out_of_time = True
                break
        bar.close()
        self.tokens_per_s = tokens_seen / max(time.monotonic() - started, 1e-9)
        return out_of_time

    def forward(self, batch: torch.Tensor, state):
        """This rank's summed NLL of ``batch``, its token count, and the state to carry on."""
        with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            nll, n, state = self.loss(self.ctx.shard(batch), state)
        # truncated BPTT: the next chunk starts from this state but backpropagates no further
        if self.cfg.batching != "streams":
            return nll, n, None
        return nll, n, [tuple(s.detach() for s in layer) for layer in state]

    def optimize(self, nll: torch.Tensor, total_nll: float, total_n: float) -> None:
        """One optimizer step on the mean NLL over the global batch's ``total_n`` tokens."""
        if not math.isfinite(total_nll):
            self.diverged(f"the training loss is {total_nll}")
        self.optimizer.zero_grad(set_to_none=True)
        if not total_n:  # a chunk of padding only (a very short --seq-len) has nothing to learn
            return
        # DDP averages gradients over ranks; scaling by world/total makes that the mean over all
        # the global batch's tokens
        (nll * (self.ctx.world / total_n)).backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        if not math.isfinite(norm):
            self.diverged(f"the gradient norm is {float(norm)}")
        self.optimizer.step()
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)

    def end_epoch(self, partial: bool = False) -> None:
        """Validate, record the epoch (or the part of one) in the history, save and log."""
        p, train_loss = self.progress, self.progress.train_loss()
        # without titles; with an average, the average is scored (and the weights beside it)
        val_ppl = perplexity(self.scored_model(), self.table, self.texts["valid"]).perplexity
        if not math.isfinite(val_ppl):
            self.diverged(f"the validation perplexity is {val_ppl}")
        p.epoch += 0 if partial else 1
        record = {
            "epoch": p.epoch + (p.step_in_epoch / self.steps_per_epoch if partial else 0),
            "step": p.global_step,
            "elapsed_s": round(p.elapsed_s, 1),
            "train_loss": round(train_loss, 4),
            "val_ppl": round(val_ppl, 3),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        if self.averaged is not None:
            raw = perplexity(self.model, self.table, self.texts["valid"]).perplexity
            record["val_ppl_weights"] = round(raw, 3)
        self.history.append(record)
        if not partial:
            p.next_epoch()
        improved = p.validated(val_ppl)
        if not improved and p.bad_epochs >= self.cfg.patience:
            self.log(
                f"validation perplexity has not improved for {p.bad_epochs} epochs: stopping early"
            )
        self.log(
            f"epoch {record['epoch']:.2f}: train loss {train_loss:.4f}, "
            f"valid ppl {val_ppl:.2f}{' (best)' if improved else ''}, "
            f"{record['elapsed_s'] / 60:.1f} min"
        )
        # last.pt first: killed between the two writes, the run resumes and writes best.pt
        self.save_last()
        if improved:
            self.save_best()
        self.write_metrics()

    def diverged(self, what: str) -> None:
        """Stop a run whose numbers are no longer finite; last.pt keeps its last good state."""
        raise Diverged(
            f"training diverged at step {self.progress.global_step + 1}: {what}; "
            f"{self.folder.last} keeps the state of its last save (step "
            f"{self.folder.saved_step()}); try a lower --lr or --clip"
        )

    def finish(self) -> dict:
        """The run's result. The test split is left alone: it is for the one model that ships,
        scored once with ``python -m poetry_lm evaluate <out>/best.pt``."""
        best = read_checkpoint(self.folder.best)
        result = {
            "best_val_ppl": best["progress"]["best_val_ppl"],
            "train_minutes": self.progress.elapsed_s / 60,
        }
        self.log(
            f"best checkpoint {self.folder.best}: valid ppl {result['best_val_ppl']:.2f} "
            f"after {result['train_minutes']:.1f} min"
        )
        self.write_metrics(result)
        return result

    def write_metrics(self, result: dict | None = None) -> None:
        if self.ctx.is_main:
            p = self.progress
            write_metrics(self.folder.path, asdict(self.cfg), self.history, p.loss_by_step, result)


def catch_signals(handler) -> dict:
    """Ctrl-C, SIGTERM (kill, job schedulers) and SIGHUP (a closed terminal) go to ``handler``,
    which asks training to stop after the current step: a step is never cut in half. Returns
    the handlers replaced (none outside the main thread, where Python allows no handler)."""
    replaced = {}
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            replaced[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread
            break
    return replaced


def progress_bar(batches, steps: int, done: int, epoch: int, show: bool):
    """A progress bar over the ``steps`` of ``epoch``, ``done`` of them already trained."""
    from tqdm import tqdm

    return tqdm(
        batches,
        total=steps,
        initial=done,
        desc=f"epoch {epoch}",
        unit="step",
        dynamic_ncols=True,
        disable=not show,
        # a log file (stderr not a terminal) gets a progress line a minute
        mininterval=0.5 if sys.stderr.isatty() else 60,
    )
