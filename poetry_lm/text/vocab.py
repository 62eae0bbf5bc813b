"""The character vocabulary: built with fastNLP from the train split, stored as a plain list.

Index order is fixed: ``<pad>`` 0, ``<unk>`` 1, then every other token by descending train
frequency (ties in first-seen order). Frequency order is what an adaptive softmax needs, and
a plain list of strings is what a checkpoint can carry without pickling a class.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)


def _fastnlp_vocabulary():
    """fastNLP's Vocabulary class, imported on demand (~3 s) and without its pkg_resources
    warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastNLP import Vocabulary
    return Vocabulary


def build_vocabulary(poems: Iterable[str], min_freq: int = 1):
    """A fastNLP ``Vocabulary`` of the characters of ``poems``; BOS/EOS are counted once per
    poem."""
    Vocabulary = _fastnlp_vocabulary()

    vocab = Vocabulary(min_freq=min_freq, padding=PAD, unknown=UNK)
    for poem in poems:
        vocab.add_word_lst([BOS, *poem, EOS])
    return vocab.build_vocab()


def vocabulary_to_list(vocab) -> list[str]:
    """fastNLP ``Vocabulary`` → its tokens in index order (plain data for a checkpoint)."""
    return [vocab.to_word(i) for i in range(len(vocab))]


def vocabulary_from_list(tokens: list[str]):
    """Tokens in index order → an equal fastNLP ``Vocabulary`` (all counts 1 keep the list
    order)."""
    vocab = _fastnlp_vocabulary()(padding=tokens[0], unknown=tokens[1])
    vocab.add_word_lst(tokens[2:])
    return vocab.build_vocab()


class CharTable:
    """Token ↔ index for encoding and decoding, from the plain token list (no fastNLP)."""

    def __init__(self, tokens: list[str]):
        missing = [tok for tok in SPECIALS if tok not in tokens]
        if missing:
            raise ValueError("vocabulary lacks the special tokens " + ", ".join(missing))
        self.tokens = list(tokens)
        self.index = {tok: i for i, tok in enumerate(self.tokens)}
        self.pad, self.unk, self.bos, self.eos = (self.index[t] for t in SPECIALS)

    def __len__(self) -> int:
        return len(self.tokens)

    def unknown_chars(self, text: str) -> list[str]:
        return [ch for ch in dict.fromkeys(text) if ch not in self.index]

    def encode(self, text: str) -> list[int]:
        """Characters → indices; an unknown character maps to ``<unk>``."""
        return [self.index.get(ch, self.unk) for ch in text]

    def encode_poem(self, text: str) -> list[int]:
        """A whole poem as the model sees it: begin + characters + end."""
        return [self.bos, *self.encode(text), self.eos]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens[i] for i in ids)
