"""Masks over a vocabulary's tokens, made once per vocabulary (:func:`token_masks`), and the two
choices a poem's own characters settle as it is written: its rhyme group (:class:`Choice`) and
its tonal key (:class:`ToneKeys`). The rules of :mod:`poetry_lm.prosody.forms` combine them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from poetry_lm.prosody.heard import END, INNER, WRITE_END_SHARE, heard_groups, heard_tones
from poetry_lm.prosody.rhyme import PING, ZE, groups_of, rhyme_groups, tones_of
from poetry_lm.prosody.variants import variants_in
from poetry_lm.text.corpus import is_ideograph
from poetry_lm.text.vocab import LOST_CHAR, SPECIALS, CharTable

VERSE_ENDS = "，。？！；"  # a verse (句) ends at one of these
CLOSING = "。？！"  # … and a couplet, or the poem, at one of these


def rows_with_any(mask: torch.Tensor) -> np.ndarray:
    """(B, V) bool → (B,) numpy bool: whether each row allows some token. In numpy because
    torch's reduction along a row of bools is slow here: 5 µs for one row of V = 6868 and
    0.3–1.1 ms for 100 rows, against numpy's 2 and 7–15 µs (torch 2.13, one AMD EPYC core)."""
    return mask.numpy().any(1)


class Choice:
    """A choice each poem's own characters settle as it is written (its rhyme group; its tonal
    key is a :class:`ToneKeys`): ``open[b, k]`` says whether option k is still open to poem b."""

    def __init__(self, batch: int, open_options: torch.Tensor):
        self.open = open_options.expand(batch, -1).clone()

    def allows(self, fits: torch.Tensor) -> torch.Tensor:
        """fits (K, V) of 0/1: option k admits character v here → (B, V): characters that fit an
        open option."""
        return (self.open.float() @ fits) > 0

    def settle(self, fits: torch.Tensor, tokens: torch.Tensor, rows: torch.Tensor) -> None:
        """Close the options each written token does not fit, in the rows (B,) asked, unless it
        fits none (forced or backed off)."""
        narrowed = self.open & (fits[:, tokens].T > 0)
        keep = narrowed.any(1, keepdim=True) & rows[:, None]
        self.open = torch.where(keep, narrowed, self.open)


# The tonal keys as bits of a code: 1 平起, 2 仄起, 3 both (a poem's start: neither is settled)
PING_QI, ZE_QI, BOTH_KEYS = 1, 2, 3
TONE_RULES = [(0, 0), (1, 1), (0, 1), (1, 0)]  # every rule forms.tone_rule returns
ToneTable = dict[tuple[int, int], np.ndarray]  # an array per tone rule


class ToneKeys:
    """The tonal keys (平起, 仄起) still open to each poem, settled by its tonal characters: a
    :class:`Choice` of two options, kept as a code per poem (B,) (bits: ``PING_QI``, ``ZE_QI``).

    Why not a Choice: a tone rule applies at half of a form's steps, and there the Choice's
    product and a dozen small torch calls made a step ~60 µs slower at batch 1. The code
    indexes masks made once per vocabulary (:func:`tone_tables`): one lookup, and three calls
    to settle, in numpy, whose calls on a few numbers cost a third of torch's (~15 µs in all;
    docs/performance.md, "Generation")."""

    def __init__(self, batch: int, allowed: ToneTable, keys: ToneTable):
        self.code = np.full(batch, BOTH_KEYS)
        self.allowed, self.keys = allowed, keys  # tone_tables()'s, per rule

    @property
    def open(self) -> torch.Tensor:
        """(B, 2) bool: whether 平起, 仄起 are still open to poem b (as ``Choice.open``)."""
        return torch.from_numpy(np.stack([self.code & PING_QI > 0, self.code & ZE_QI > 0], 1))

    def allows(self, rule: tuple[int, int]) -> torch.Tensor:
        """(B, V): the characters that fit the rule under a key still open."""
        return torch.from_numpy(self.allowed[rule][self.code])

    def settle(self, rule: tuple[int, int], tokens: torch.Tensor) -> None:
        """Close the keys each written token (B,) does not fit, unless it fits none (forced or
        backed off). Every poem: a form's poems are all live until the end, which has no rule."""
        narrowed = self.code & self.keys[rule][tokens.numpy()]  # (B,)
        self.code = np.where(narrowed > 0, narrowed, self.code)

    def select(self, index: torch.Tensor) -> None:
        self.code = self.code[index.numpy()]


def tone_tables(end_fits: torch.Tensor, inner_fits: torch.Tensor) -> tuple[ToneTable, ToneTable]:
    """The (2, V) 平/仄 fits as heard at a line's end and at its 2nd/4th/6th characters → per
    tone rule (``forms.tone_rule``: (t, t) is a line's end, the others inner places),
    ``allowed[rule]`` (4, V) bool, row c: the characters that fit the rule under a key of code
    c; and ``keys[rule]`` (V,) int: the code of the keys each character fits there (0: none).
    numpy arrays, for ToneKeys."""
    codes = np.arange(4)[:, None]  # (4, 1): every code of open keys
    allowed, keys = {}, {}
    for rule in TONE_RULES:
        tone_fits = end_fits if rule[0] == rule[1] else inner_fits
        fits = tone_fits[list(rule)].numpy() > 0  # (2, V): fits the rule in 平起, in 仄起
        keys[rule] = fits[0] * PING_QI + fits[1] * ZE_QI
        allowed[rule] = (codes & keys[rule]) > 0
    return allowed, keys


@dataclass(frozen=True)
class TokenMasks:
    """(V,) or (K, V) masks over a vocabulary's tokens, the special tokens set only in ``end``:
    boolean, but the fits are 0/1 floats, ready for ``Choice.allows``'s product (converting 30 × V
    at each rhyme would cost more than the product)."""

    end: torch.Tensor  # the end token alone
    ordinary: torch.Tensor  # every character and mark
    ideographs: torch.Tensor
    verse_ends: torch.Tensor  # ，。？！；
    marks: torch.Tensor  # (2, V): ， and 。
    free_marks: torch.Tensor  # (2, V): a free poem's odd verses' ends (，；), even ones' (。？！)
    tone_fits: torch.Tensor  # (2, V): may be read 平, may be read 仄 (by the table)
    end_fits: torch.Tensor  # (2, V): heard 平, heard 仄 at a line's end (the table's: heard off)
    tone_allowed: ToneTable  # per tone rule, (4, V): ``tone_tables``, for ``ToneKeys``
    tone_keys: ToneTable  # per tone rule, (V,)
    group_names: list[str]  # the 平 rhyme groups …
    group_fits: torch.Tensor  # (groups, V): … and their characters
    group_sizes: torch.Tensor  # (groups,)
    any_group_fits: torch.Tensor  # (all 106 groups, V): a free poem may rhyme in any
    any_group_sizes: torch.Tensor  # (all 106 groups,)


def group_table(tokens: list[str], never: set[str], groups, groups_at) -> torch.Tensor:
    """(len(groups), V) 0/1: token v is in group k by ``groups_at`` (one pass over the tokens,
    each asked once, rather than one per group)."""
    row = {g.name: k for k, g in enumerate(groups)}
    fits = torch.zeros(len(groups), len(tokens))
    for v, tok in enumerate(tokens):
        for g in () if tok in never else groups_at(tok):
            if g.name in row:
                fits[row[g.name], v] = 1.0
    return fits


@lru_cache(maxsize=4)
def token_masks(table: CharTable, heard: bool = True, standard: bool = False) -> TokenMasks:
    """Classify a vocabulary once (a Python pass over V tokens), not at every generate call.
    ``heard``: a form's rhyme groups and tones as real poems use each character
    (:mod:`poetry_lm.prosody.heard`); else every reading of the table. ``standard``: no variant
    character (:mod:`poetry_lm.prosody.variants`; ``Rules`` asks it with the heard rules)."""

    # (V,) tokens that pass test; specials and 囗 (a lost character, which older
    # vocabularies list) are never written, nor, where ``standard``, a variant (劒) of
    # another token (剑): its probability goes to the others (prosody/variants.py)
    never = {*SPECIALS, LOST_CHAR, *(variants_in(table.tokens) if standard else ())}

    def having(test) -> torch.Tensor:
        return torch.tensor([tok not in never and test(tok) for tok in table.tokens])

    def tone_having(tones_at) -> torch.Tensor:  # (2, V): 平 fits, 仄 fits
        tones = [() if tok in never else tones_at(tok) for tok in table.tokens]  # asked once
        return torch.tensor([[t in heard for heard in tones] for t in (PING, ZE)]).float()

    groups = [g for g in rhyme_groups() if g.tone == PING]
    group_fits = group_table(table.tokens, never, groups, heard_groups if heard else groups_of)
    tone_fits = tone_having(tones_of)
    end_fits = (
        tone_having(lambda tok: heard_tones(tok, END, WRITE_END_SHARE)) if heard else tone_fits
    )
    inner_fits = tone_having(lambda tok: heard_tones(tok, INNER)) if heard else tone_fits
    any_group_fits = group_table(table.tokens, never, rhyme_groups(), groups_of)
    tone_allowed, tone_keys = tone_tables(end_fits, inner_fits)
    return TokenMasks(
        end=F.one_hot(torch.tensor(table.eos), len(table)).bool(),
        ordinary=having(lambda tok: True),
        ideographs=having(is_ideograph),
        verse_ends=having(lambda tok: tok in VERSE_ENDS),
        marks=torch.stack([having(lambda tok: tok == "，"), having(lambda tok: tok == "。")]),
        free_marks=torch.stack(
            [having(lambda tok: tok in "，；"), having(lambda tok: tok in CLOSING)]
        ),
        tone_fits=tone_fits,
        end_fits=end_fits,
        tone_allowed=tone_allowed,
        tone_keys=tone_keys,
        group_names=[g.name for g in groups],
        group_fits=group_fits,
        group_sizes=group_fits.sum(1),
        any_group_fits=any_group_fits,
        any_group_sizes=any_group_fits.sum(1),
    )
