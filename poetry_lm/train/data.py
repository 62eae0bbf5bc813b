"""What a run reads: the corpus's poems and titles by split (with a pretraining corpus's train
split beside them), the vocabulary and model configuration a new run builds from train, and
each epoch's batches."""

from __future__ import annotations

import math

import numpy as np

from poetry_lm.model.lm import ModelConfig
from poetry_lm.text.batching import make_streams, make_windows, stream_chunks, window_batches
from poetry_lm.text.corpus import CorpusError, clean_title, load_corpus, orient
from poetry_lm.text.duplicates import PUNCTUATION
from poetry_lm.text.vocab import CharTable, build_vocabulary, vocabulary_to_list
from poetry_lm.train.config import TrainConfig, corpus_path


def load_texts(cfg: TrainConfig) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The corpus's poem texts and cleaned titles by split (the first ``limit_poems`` of each,
    if set), and under "pretrain" the train split of ``pretrain_corpus``, if set.

    Raises CorpusError when train or valid is empty (a perplexity over no poems would read as a
    perfect 1.0) or train has fewer poems than --min-freq (no token would be kept)."""
    splits = load_corpus(cfg.corpus)
    if cfg.limit_poems:
        splits = {k: v[: cfg.limit_poems] for k, v in splits.items()}
    for name in ("train", "valid"):
        if not splits[name]:
            raise CorpusError(
                f"the {name} split of {cfg.corpus} holds no poems; training needs poems in "
                "train and valid (see corpus/README.md for how poems are split)"
            )
    if len(splits["train"]) < cfg.min_freq:
        raise CorpusError(
            f"the train split of {cfg.corpus} has {len(splits['train'])} poem(s), fewer "
            f"than --min-freq {cfg.min_freq}: no character would be kept"
        )
    if cfg.pretrain_corpus:  # its train split only: its valid and test stay unread
        pre = load_corpus(corpus_path(cfg.pretrain_corpus))["train"][: cfg.limit_poems]
        splits["pretrain"] = pre
    texts = {k: [p.text for p in v] for k, v in splits.items()}
    return texts, {k: [clean_title(p.title) for p in v] for k, v in splits.items()}


def vocabulary(
    cfg: TrainConfig, train: list[str], ckpt: dict | None
) -> tuple[list[str], ModelConfig]:
    """The vocabulary and the model's configuration: the checkpoint's when resuming, else built
    from the corpus's own ``train`` poems (characters seen ``min_freq`` times; never those of the
    pretraining corpus), with adaptive-softmax cutoffs from their frequencies."""
    if ckpt is not None:
        return ckpt["vocab"], ModelConfig.from_saved(ckpt["config"])
    fnlp_vocab = build_vocabulary(train, cfg.min_freq)
    vocab = vocabulary_to_list(fnlp_vocab)
    model_cfg = ModelConfig(vocab_size=len(vocab), **cfg.model)
    if model_cfg.softmax == "adaptive" and not model_cfg.cutoffs:
        counts = [fnlp_vocab.word_count.get(tok, 0) for tok in vocab]
        model_cfg.cutoffs = adaptive_cutoffs(counts)
    if model_cfg.couplet_input:  # the tracker's token kinds, kept in the config
        table = CharTable(vocab)
        model_cfg.verse_marks = [table.index[m] for m in PUNCTUATION if m in table.index]
        model_cfg.verse_resets = [table.pad, table.bos, table.eos, table.sep]
    return vocab, model_cfg


def adaptive_cutoffs(counts: list[int], shares=(0.80, 0.95)) -> list[int]:
    """Cluster boundaries of a frequency-sorted vocabulary: the head covers the most frequent
    tokens up to ``shares[0]`` of all train tokens, the next cluster up to ``shares[1]``."""
    cumulative = np.cumsum(counts) / sum(counts)
    cutoffs = sorted({int(np.searchsorted(cumulative, s)) + 1 for s in shares})
    return [c for c in cutoffs if 0 < c < len(counts)]


class EpochBatches:
    """The train poems of each epoch, encoded (``encoded``), cut into windows for
    ``batching="windows"`` (``windows``) and shuffled into (T, B) batches. In the first
    ``pretrain_epochs`` epochs the pretraining corpus's train poems come after the corpus's."""

    def __init__(self, cfg: TrainConfig, table: CharTable, texts: dict, titles: dict, direction):
        self.cfg, self.table, self.direction = cfg, table, direction
        self.texts, self.titles = texts, titles
        self.encoded, self.windows = self.prepare(0)

    def prepare(self, epoch: int) -> tuple[list[list[int]], np.ndarray | None]:
        """The encoded train poems of ``epoch`` and, for ``batching="windows"``, their windows.
        With a ``title_share``, which poems carry their title is drawn for ``epoch``; a backward
        model reads every poem right to left (its title, context, still first)."""
        cfg = self.cfg
        parts = ["train", "pretrain"] if epoch < cfg.pretrain_epochs else ["train"]
        texts = [orient(t, self.direction) for k in parts for t in self.texts[k]]
        titles = [title for k in parts for title in self.titles[k]]
        titled = np.random.default_rng([cfg.seed, epoch, 1]).random(len(texts)) < cfg.title_share
        encoded = [
            self.table.encode_poem(text, title if keep else "")
            for text, title, keep in zip(texts, titles, titled)
        ]
        if cfg.batching == "streams":
            return encoded, None
        return encoded, make_windows(encoded, cfg.seq_len, cfg.seq_step, self.table.pad)

    def of_epoch(self, epoch: int, start: int = 0):
        """This epoch's shuffled (T, B) batches from step ``start`` on, and its number of steps."""
        cfg = self.cfg
        if cfg.title_share or cfg.pretrain_epochs:  # this epoch's poems, and which are titled
            self.encoded, self.windows = self.prepare(epoch)
        rng = np.random.default_rng([cfg.seed, epoch])
        if cfg.batching == "streams":
            streams = make_streams(self.encoded, cfg.batch_size, self.table.pad, rng)
            return stream_chunks(streams, cfg.seq_len, start), math.ceil(
                (len(streams) - 1) / (cfg.seq_len - 1)
            )
        order = rng.permutation(len(self.windows))
        return window_batches(self.windows, cfg.batch_size, order, start), math.ceil(
            len(self.windows) / cfg.batch_size
        )

    def total_steps(self, steps_per_epoch: int) -> int:
        """The schedule's length: ``steps_per_epoch`` for every epoch, or with pretraining the
        pretraining epochs' steps, then the corpus's own."""
        cfg = self.cfg
        if not cfg.pretrain_epochs:
            return cfg.max_epochs * steps_per_epoch
        pre = self.of_epoch(0)[1]
        own = self.of_epoch(cfg.pretrain_epochs)[1] if cfg.max_epochs > cfg.pretrain_epochs else 0
        self.of_epoch(0)  # the poems of epoch 0 again, as they were
        return cfg.pretrain_epochs * pre + (cfg.max_epochs - cfg.pretrain_epochs) * own
