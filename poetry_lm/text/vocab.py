"""The character vocabulary: built with fastNLP from the train split, stored as a plain list.

Index order is fixed: ``<pad>`` 0, ``<unk>`` 1, then every other token by descending train
frequency (ties in first-seen order). Frequency order is what an adaptive softmax needs, and
a plain list of strings is what a checkpoint can carry without pickling a class.

A poem with its title reads ``<bos> title <sep> poem <eos>``. Title tokens and ``<sep>`` are
context, never scored: they are stored as their index plus the vocabulary size V (a *context
token*), so that one int array says both what the model reads (index mod V) and what it scores
(targets below V). Vocabularies from before titles have no ``<sep>`` and read no titles.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

PAD, UNK, BOS, EOS, SEP = "<pad>", "<unk>", "<bos>", "<eos>", "<sep>"
# tokens that are never poem text (so never written); every vocabulary has the first four, and
# <sep> only one from a run with titles
SPECIALS = (PAD, UNK, BOS, EOS, SEP)
REQUIRED = SPECIALS[:4]
# 囗 (U+56D7) stands in for a lost character in 28 poems of the corpus. Those poems are kept, but
# 囗 is never a token: it is encoded as <unk> (so it is scored as an unknown character and never
# generated, since generation never writes <unk>), even by a vocabulary that lists it.
LOST_CHAR = "囗"


def _fastnlp_vocabulary():
    """fastNLP's Vocabulary class, imported on demand (~3 s) and without its pkg_resources
    warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastNLP import Vocabulary
    return Vocabulary


def build_vocabulary(poems: Iterable[str], min_freq: int = 1):
    """A fastNLP ``Vocabulary`` of the characters of ``poems``; BOS/SEP/EOS count once per poem.

    Titles are not counted: a title character outside the poems' vocabulary reads as ``<unk>``.
    """
    Vocabulary = _fastnlp_vocabulary()

    vocab = Vocabulary(min_freq=min_freq, padding=PAD, unknown=UNK)
    for poem in poems:
        vocab.add_word_lst([BOS, SEP, *(ch for ch in poem if ch != LOST_CHAR), EOS])
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
        missing = [tok for tok in REQUIRED if tok not in tokens]
        if missing:
            raise ValueError("vocabulary lacks the special tokens " + ", ".join(missing))
        self.tokens = list(tokens)
        self.index = {tok: i for i, tok in enumerate(self.tokens)}
        self.index.pop(LOST_CHAR, None)  # older vocabularies list it; it still reads as <unk>
        self.pad, self.unk, self.bos, self.eos = (self.index[t] for t in REQUIRED)
        self.sep = self.index.get(SEP)  # None: a vocabulary from before titles

    def __len__(self) -> int:
        return len(self.tokens)

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of ``text`` that encode as ``<unk>`` (囗 included), each once."""
        return [ch for ch in dict.fromkeys(text) if ch not in self.index]

    def encode(self, text: str) -> list[int]:
        """Characters → indices; an unknown character maps to ``<unk>``."""
        return [self.index.get(ch, self.unk) for ch in text]

    def encode_poem(self, text: str, title: str = "") -> list[int]:
        """A whole poem as the model sees it: begin (+ title + separator) + characters + end.

        The title and ``<sep>`` come as context tokens (index + V), never scored. Raises
        ValueError for a title with a vocabulary that has no ``<sep>``.
        """
        if not title:
            return [self.bos, *self.encode(text), self.eos]
        if self.sep is None:
            raise ValueError("this model was trained without titles and cannot read one")
        context = [i + len(self) for i in [*self.encode(title), self.sep]]
        return [self.bos, *context, *self.encode(text), self.eos]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens[i % len(self)] for i in ids)
