"""The model's side of the web service: one loaded model and one :class:`Stepper`, and what the
API asks of them (write, score, rewrite a line). No HTTP here; :mod:`poetry_lm.serve.app` calls
these from its single decoding thread, so torch only ever runs in one thread at a time.

Errors a user can cause are ``ValueError`` with one sentence (the app answers 400).
"""

from __future__ import annotations

from pathlib import Path

import torch

from poetry_lm.decoding.generate import (
    GeneratedPoem,
    SampleOptions,
    check_acrostic_starts,
    check_start,
    check_title,
    generate,
    sample_step,
    verses,
)
from poetry_lm.model.stepper import Stepper
from poetry_lm.evaluation.score import score_poem
from poetry_lm.model.checkpoint import load_model
from poetry_lm.prosody.forms import (
    FORMS,
    VERSE_ENDS,
    Constraints,
    Form,
    check_keywords,
    token_masks,
)
from poetry_lm.prosody.rhyme import PING, ZE, rhyme_groups, tones_of
from poetry_lm.text.corpus import is_ideograph
from poetry_lm.text.normalise import read_poem, read_title


def recognise_form(lines: list[str]) -> Form | None:
    """4 or 8 verses of 5 or 7 characters, each closed by a mark → that form, else None."""
    for form in FORMS.values():
        if len(lines) == form.lines and all(
            len(line) == form.chars + 1 and line[-1] in VERSE_ENDS for line in lines
        ):
            return form
    return None


def rhyme_positions(lines: list[str], rhyme_first: bool) -> list[int]:
    """Indices into the joined text of the rhyming characters of a form poem: the last
    character of every second verse (and of the first with ``rhyme_first``)."""
    ends = [sum(map(len, lines[: i + 1])) - 2 for i in range(len(lines))]  # before each mark
    return [end for i, end in enumerate(ends) if i % 2 == 1 or (i == 0 and rhyme_first)]


def tone_marks(text: str) -> list[str]:
    """Per character: 平, 仄, 平仄 (read either way) or '' (not in the table, or a mark)."""
    return ["".join(t for t in (PING, ZE) if t in tones_of(ch)) for ch in text]


def check_fits(start: str, form: Form) -> None:
    """A start text must follow the form's layout (characters, then ， or 。), as generation
    forces it; raises ValueError naming the first character out of place."""
    for k, ch in enumerate(start):
        line, col = divmod(k, form.chars + 1)
        want = "，。"[line % 2] if col == form.chars else None
        if line >= form.lines or (want and ch != want) or (not want and not is_ideograph(ch)):
            raise ValueError(f"the start text {start!r} does not fit a {form.name} at {ch!r}")


def poem_seeds(generator: torch.Generator, n: int) -> list[int]:
    """One seed per poem, drawn as :func:`generate` draws them from its generator: a request's
    seed then writes the poems that ``poetry-lm generate --seed`` writes with the same options,
    whatever else is decoded in the same batch."""
    return torch.randint(0, 2**62, (n,), generator=generator).tolist()


class Poet:
    """The model loaded once, from ``checkpoint``, with its Stepper built once (~2 s)."""

    def __init__(self, checkpoint: Path | str):
        self.checkpoint = Path(checkpoint)
        self.model, self.table, _ = load_model(checkpoint)
        self.step = Stepper(self.model)

    def read(self, text: str, what: str = "poem") -> str:
        """A user's text by the one rule every command uses (text/normalise.py): full-width
        marks, simplified script only for characters the model lacks; raises PoemTextError
        (a ValueError) naming ``what`` when it is not poem text."""
        return read_poem(text, self.table.index, what)

    def read_known(self, text: str, what: str, field: str) -> str:
        """:meth:`read`, and every character known to the model (else UnknownCharacterError,
        a SettingError naming the request's ``field``): what a generate request's texts must
        be."""
        text = self.read(text, what)
        check_start(self.table, text, field)
        return text

    def read_title(self, text: str) -> str:
        """A user's title by the same rule (its Chinese characters kept, as the corpus keeps
        titles); raises PoemTextError when it is not poem text or is too long, ValueError for a
        model trained without titles. Characters the model lacks are read as <unk>, as in
        training."""
        title = read_title(text, self.table.index)
        check_title(self.table, title)
        return title

    def read_starts(self, texts: list[str], form: Form | None, acrostic: str) -> list[str]:
        """A request's start texts, each read by :meth:`read_known` and following the form's
        layout; [""] for none. Raises ValueError, and SettingError (naming the acrostic) for a
        start beside an acrostic."""
        starts = [self.read_known(text, "start", "starts") for text in texts]
        for text in starts if form else []:
            check_fits(text, form)
        check_acrostic_starts(acrostic, starts)
        return starts or [""]

    def check_keywords(self, starts: list[str], cons: Constraints, max_len: int) -> None:
        """Keywords that fit the poem asked for with each start (else a KeywordError naming the
        problem), checked before decoding so that they never fail a shared batch."""
        check_keywords(self.table, cons, starts, max_len)

    def generate(
        self,
        starts: list[str],
        opts: SampleOptions,
        cons: Constraints,
        seeds: list[int],
    ) -> list[GeneratedPoem]:
        """One poem per start, poem i drawn from ``seeds[i]``."""
        return generate(self.model, self.table, starts, opts, None, cons, self.step, seeds)

    def score(self, text: str):
        """As ``poetry-lm score``: a character the model lacks is scored as ``<unk>``."""
        return score_poem(self.model, self.table, text)

    @torch.inference_mode()
    def rewrite(
        self, text: str, index: int, n: int, opts: SampleOptions, generator: torch.Generator
    ) -> list[tuple[str, list[float], float]]:
        """Up to ``n`` new versions of verse ``index`` of ``text``, each as (whole poem, the
        log-probability of each of its characters, the mean over its tokens with the end),
        likeliest poem first.

        The verse is sampled after the verses before it, with their state, and keeps its length
        and closing mark. In a form poem its last character keeps the form: on a rhyming verse
        it rhymes with the other rhymes (a 平 group they all share, none of them repeated), on
        another verse it is 仄. Candidates are ranked by the log-probability of the whole poem,
        the later verses and the end included, so a line that fits what follows wins.
        Raises ValueError for an unknown character, a missing verse or a verse without characters.
        """
        check_start(self.table, text, "text")
        prefix, body, suffix = self.verse_parts(text, index)
        lines = verses(text)
        masks = token_masks(self.table)
        last = masks.ideographs & self.last_character_rule(lines, index)  # (V,)

        K = min(4 * n, 32)  # sampled, then deduplicated and ranked
        ids = [self.table.bos, *self.table.encode(prefix)]
        logprobs, state = [], None  # the prefix's, read once for all candidates
        for k, token in enumerate(ids):
            logp, state = self.step(torch.tensor([token]), state)
            if k + 1 < len(ids):
                logprobs.append(float(logp[0, ids[k + 1]]))
        logp = logp.expand(K, -1)  # (K, V): the verse's first character
        state = state.select(torch.zeros(K, dtype=torch.long))  # the prefix's, for every row
        uniforms = torch.rand(len(body), K, generator=generator).numpy()
        written, chosen = [], []  # (K,) tokens and their log-probabilities, per step
        for j in range(len(body)):
            mask = (last if j == len(body) - 1 else masks.ideographs).expand(K, -1)
            ids = torch.from_numpy(sample_step(logp.numpy(), mask.numpy(), uniforms[j], opts))
            written.append(ids)
            chosen.append(logp[torch.arange(K), ids])  # the model's own, unmasked
            logp, state = self.step(ids, state)
        for token in [*self.table.encode(suffix), self.table.eos]:  # score what follows
            chosen.append(logp[:, token])
            logp, state = self.step(torch.full((K,), token), state)
        written, chosen = torch.stack(written, 1), torch.stack(chosen, 1)  # (K, L), (K, L + S)
        ranked = sorted(range(K), key=lambda k: -float(chosen[k].sum()))
        out, seen = [], {body}
        for k in ranked:
            line = self.table.decode(written[k].tolist())
            if line not in seen and len(out) < n:
                seen.add(line)
                every = logprobs + chosen[k].tolist()  # each token's, the end's last
                out.append((prefix + line + suffix, every[:-1], sum(every) / len(every)))
        return out

    @staticmethod
    def verse_parts(text: str, index: int) -> tuple[str, str, str]:
        """(the verses before verse ``index``, its characters, its mark and the verses after).
        Raises ValueError for a missing verse or a verse without characters."""
        lines = verses(text)
        if not 0 <= index < len(lines):
            raise ValueError(
                f"the poem has {len(lines)} verses, so line must be 0 to {len(lines) - 1}"
            )
        target = lines[index]
        body = target[:-1] if target[-1] in VERSE_ENDS else target
        if not body or not all(map(is_ideograph, body)):
            raise ValueError(f"verse {index} must be characters and one closing mark")
        return "".join(lines[:index]), body, target[len(body) :] + "".join(lines[index + 1 :])

    def rhyme_of(self, lines: list[str], skip: int | None = None) -> tuple[list[str], bool]:
        """A form poem's verses → the 平 groups that the last characters of its rhyming verses
        (every second one, verse ``skip`` left out) all belong to, and whether the first verse
        rhymes with them too (首句入韵). ([], False) for a poem of no form or no common group."""
        if recognise_form(lines) is None:
            return [], False
        ends = [line[-2] for line in lines]
        others = [ends[i] for i in range(1, len(lines), 2) if i != skip]
        groups = [g for g in rhyme_groups() if g.tone == PING and all(c in g.chars for c in others)]
        return [g.name for g in groups], any(ends[0] in g.chars for g in groups)

    def last_character_rule(self, lines: list[str], index: int) -> torch.Tensor:
        """(V,) the characters allowed at the end of verse ``index`` by the poem's form."""
        V = len(self.table)
        if recognise_form(lines) is None:
            return torch.ones(V, dtype=torch.bool)
        masks = token_masks(self.table)
        names, first_rhymes = self.rhyme_of(lines, skip=index)
        if index % 2 == 1 or (index == 0 and first_rhymes):
            if not names:  # the other verses share no group: nothing to rhyme with
                return torch.ones(V, dtype=torch.bool)
            fits = masks.group_fits[[i for i, g in enumerate(masks.group_names) if g in names]]
            allowed = fits.sum(0) > 0
            ends = [line[-2] for line in lines]  # no 重韵: not another verse's rhyme
            taken = [
                ends[i]
                for i in range(len(lines))
                if i != index and (i % 2 or (i == 0 and first_rhymes))
            ]
            allowed[[self.table.index[c] for c in taken if c in self.table.index]] = False
            return allowed
        return masks.tone_fits[1] > 0  # a verse that does not rhyme ends 仄
