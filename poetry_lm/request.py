"""Everything a user can ask of the poet, in one place: a :class:`PoemRequest`, and how each next
character is chosen, its :class:`Sampling`.

Their defaults are the product's: ``PoemRequest(starts=["月"])`` asks for what ``python
generate.py 月`` writes (rhyme on; 平仄 on with a form). The command line and the API take
their options' defaults, help and ranges from these fields, and every rule is applied in one
place, :meth:`PoemRequest.check`, which raises ``SettingError`` naming the field at fault (so
that the command line words it ``--top-k`` and the API ``top_k``).

A new field (a critic to rank the candidates, say) is a field here, a check in ``check``, and
what the :class:`~poetry_lm.writing.writer.Writer` does with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, fields

from poetry_lm.prosody.forms import (
    FREE_VERSE_MAX,
    FREE_VERSE_MIN,
    VERSE_ENDS,
    Constraints,
    Form,
    check_keywords,
    parse_form,
)
from poetry_lm.prosody.keywords import split_keywords
from poetry_lm.settings import SettingError, check_range, literal, setting
from poetry_lm.text.corpus import MAX_TITLE_CHARS, is_ideograph
from poetry_lm.text.normalise import MAX_TEXT_CHARS, PoemTextError, read_poem, read_title
from poetry_lm.text.vocab import SPECIALS, CharTable

MAX_TEMPERATURE = 100.0  # above it the distribution is uniform to float32 precision
# Below this temperature sampling is greedy: every weight but the likeliest's is exp(-gap / T),
# under e^-100 for any gap over 1e-4 nats; dividing by a smaller T overflows.
GREEDY_TEMPERATURE = 1e-6
DEFAULT_MAX_LEN = 128
MAX_WIDTH = 64  # best-of candidates or beam hypotheses per poem
# how a poem's candidates are ranked (poetry_lm/decoding/select.py), the default first
SELECTIONS = ("score", "worst-verse", "coherence")


@dataclass(frozen=True)
class Sampling:
    """How each next character is chosen, and nothing else (the choice itself:
    :mod:`poetry_lm.decoding.strategy`)."""

    temperature: float = setting(
        0.8,
        "Divides the log-probabilities: below 1 is more cautious (below 1e-6: greedy).",
        0,
        MAX_TEMPERATURE,
        low_open=True,
    )
    top_k: int = setting(0, "Keep only the k most likely characters (0 keeps every character).", 0)
    top_p: float = setting(
        0.95,
        "Keep the fewest likeliest characters whose probability reaches p (1 keeps all).",
        0.0,
        1.0,
        low_open=True,
    )
    greedy: bool = setting(False, "Always take the most likely character.")
    beam: int = setting(
        0,
        "Stochastic beam search of this width instead of sampling (0: sample; Gumbel-top-k).",
        0,
        MAX_WIDTH,
    )
    repetition_penalty: float | None = setting(
        None, "Nats off a character's log-probability per earlier use [default: the form's].", 0
    )
    same_place_penalty: float | None = setting(
        None, "Nats off the previous verse's character at the same place [default: the form's].", 0
    )

    @property
    def is_greedy(self) -> bool:
        """Greedy as asked, or by a temperature too small to divide by."""
        return self.greedy or self.temperature < GREEDY_TEMPERATURE

    def check(self, given: Collection[str] = ()) -> None:
        """Ranges, and options the decoding asked for never reads, refused rather than silently
        ignored: greedy decoding (sampled or beam) reads no ``temperature`` (a plain beam is
        untempered), ``top_k`` or ``top_p``; a beam search never samples (no ``top_k`` or
        ``top_p``). ``given``: the fields a user typed, even at their default; a field away
        from its default counts as given too. A temperature under GREEDY_TEMPERATURE is how one
        asks for greedy decoding without ``greedy``, so it is refused only beside ``greedy``."""
        check_range(self)
        given = set(given) | {f.name for f in fields(self) if getattr(self, f.name) != f.default}
        if self.greedy:
            unused, by = ("temperature", "top_k", "top_p"), "greedy"
        elif self.is_greedy:
            unused, by = ("top_k", "top_p"), "temperature"
        elif self.beam:
            unused, by = ("top_k", "top_p"), "beam"
        else:
            return
        for name in unused:
            if name in given:
                raise SettingError(f"{{{name}}} has no effect with {{{by}}}: give one or the other")


SAMPLING_FIELDS = frozenset(f.name for f in fields(Sampling))


@dataclass(frozen=True)
class PoemRequest:
    """What to write: ``n`` poems per start text. Build it from flat fields with :meth:`of`."""

    starts: tuple[str, ...] = setting(
        (), "A start text for one poem (× n), repeatable; CHARS gives one poem per character."
    )
    n: int = setting(1, "Poems per start.", 1, 1000)
    form: str | None = setting(
        None,
        "五绝, 七绝, 五律 or 七律 (wujue, qijue, wulv, qilv): 4 or 8 lines of 5 or 7 characters.",
    )
    acrostic: str = setting("", "Line i begins with the i-th character (藏头诗).")
    keywords: tuple[str, ...] = setting(
        (),
        'Words the poem must hold, each inside one verse: --keywords "春 雨 归" (quoted; '
        "split at spaces, commas and 、) or the option repeated.",
    )
    rhyme: bool = setting(
        True,
        "Even lines end in one 平水韵 group, no rhyme twice (free poems: a group of either "
        "tone, once the first verse sets the length).",
    )
    rhyme_first: bool | None = setting(
        None,
        "The first line always rhymes, or never [default: each poem draws it at the rate of "
        "real poems of its form: 七言 ~75%, 五言 ~15%].",
    )
    tones: bool | None = setting(
        None,
        "Regulated 平仄 (平起 or 仄起) on the 2nd, 4th, 6th and last characters; needs a form "
        "[default: on with a form].",
    )
    heard: bool = setting(
        True,
        "A form's rhymes and 平仄 as a reader hears them: a character counts only with the "
        "readings real poems give it there (prosody/heard.py); --no-heard: every reading the "
        "平水韵 table allows.",
    )
    no_repeat: bool = setting(False, "No character twice in a poem (punctuation aside).")
    title: str = setting(
        "",
        f"Write for this title: its Chinese characters (at most {MAX_TITLE_CHARS}; marks and "
        "spaces are dropped), read first as context by a model trained with titles; characters "
        "it does not know read as <unk>.",
    )
    prime: str = setting("", "Read this first, as earlier verses of the poem, without printing it.")
    max_len: int | None = setting(
        None,
        f"Most characters per poem, the start text included [default: {DEFAULT_MAX_LEN}, or "
        "what a free acrostic's lines may need]; a form fixes the length. A longer poem ends at "
        'its last complete couplet, reported by -v (and "truncated" in JSON).',
        1,
        10000,
    )
    sampling: Sampling = Sampling()
    best_of: int = setting(
        1,
        "Sample K candidates per poem in one batch; keep the best (mean penalised log-prob).",
        1,
        MAX_WIDTH,
    )
    rerank_with: str | None = setting(
        None,
        "A backward checkpoint (trained with --direction backward): rank each poem's "
        "candidates by forward plus weighted backward log-probability per token.",
    )
    rerank_weight: float = setting(
        1.0, "λ: the weight of the backward log-probability in the rerank.", 0
    )
    select: str = setting(
        "score",
        "How the kept candidate is chosen: score (the best mean penalised log-probability), "
        "worst-verse (the best worst verse, by mean log-probability per character) or "
        "coherence (the coherence scorer's: do the verses belong together); but for score, "
        "needs 2 or more candidates per poem (best of, or beam).",
    )
    coherence_model: str | None = setting(
        None, "The coherence scorer that --select coherence reads [default: models/coherence.pt]."
    )
    seed: int | None = setting(
        None, "Random seed: the same seed writes the same poems.", 0, 2**32 - 1
    )
    # the fields a user typed, even at their default (Sampling.check); not part of the request
    given: frozenset[str] = dataclasses.field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self):
        for name in ("starts", "keywords"):  # tuples, so that a request is hashable
            if not isinstance(getattr(self, name), tuple):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    @classmethod
    def of(cls, **values) -> PoemRequest:
        """A request from flat fields, the Sampling ones (``temperature`` …) among them."""
        sampling = {k: values.pop(k) for k in list(values) if k in SAMPLING_FIELDS}
        return cls(**values, sampling=Sampling(**sampling))

    @property
    def width(self) -> int:
        """Rows decoded per poem: the beam's hypotheses, or the best-of candidates."""
        return self.sampling.beam or self.best_of

    @property
    def form_of(self) -> Form | None:
        return parse_form(self.form) if self.form else None

    def constraints(self) -> Constraints:
        """The rules the poems are written under (:mod:`poetry_lm.prosody.forms`)."""
        return Constraints.from_options(
            form=self.form_of,
            acrostic=self.acrostic,
            rhyme=self.rhyme,
            rhyme_first=self.rhyme_first,
            tones=self.tones,
            heard=self.heard,
            no_repeat=self.no_repeat,
            keywords=split_keywords(self.keywords),  # "春 雨" is two
        )

    def check(self, table: CharTable | None = None) -> PoemRequest:
        """Every rule, once → the request as the model reads it (texts by the one text rule,
        ``max_len`` worked out). Without ``table``, only the rules that need no model. Raises
        SettingError naming the field at fault."""
        check_range(self)
        self.sampling.check(self.given)
        read = self.check_options()
        if table is None:
            return read
        return read.read_texts(table).check_texts(table)

    def check_options(self) -> PoemRequest:
        """The rules between options → the request with its form's name (五绝 for wujue) and
        ``max_len`` worked out."""
        form = check_form(self.form)
        if self.sampling.beam and self.best_of > 1:
            raise SettingError("choose {beam} or {best_of}, not both")
        if self.sampling.is_greedy and self.best_of > 1:  # every candidate the same poem
            raise SettingError(
                "{greedy} draws the same candidate every time: give it or {best_of}, not both"
            )
        if self.rerank_with and self.width < 2:
            raise SettingError(
                "{rerank_with} ranks several candidates per poem: give {best_of} or {beam} of "
                "2 or more"
            )
        self.check_select()
        self.constraints()  # options at odds (tones without a form …), a keyword too long
        try:
            read_title(self.title)  # marks dropped, at most MAX_TITLE_CHARS characters
        except ValueError as err:
            raise SettingError(literal(str(err)), "title") from None
        max_len = fit_max_len(form, self.max_len, self.acrostic)
        for start in self.starts:
            check_length(start, form, max_len)
        if len(self.prime) > MAX_TEXT_CHARS:  # the one text rule's cap, named first
            message = f"the prime text has {len(self.prime)} characters; at most {MAX_TEXT_CHARS}"
            raise SettingError(literal(message + " are accepted"), "prime")
        if self.prime and self.prime[-1] in "，；":  # the poem's verses would count out of step
            raise SettingError(
                f"the prime text ends inside a couplet (on {self.prime[-1]}): end it on a whole "
                "couplet (。？！ or no mark), since the poem begins a new one",
                "prime",
            )
        if len(self.prime) > max_len:
            raise SettingError(
                f"the prime text ({len(self.prime)} characters) is longer than {{max_len}} "
                f"({max_len})",
                "prime",
            )
        return dataclasses.replace(self, form=form and form.name, max_len=max_len)

    def check_select(self) -> None:
        """``select`` names a selection; one other than score has candidates to choose among,
        and is not asked beside the rerank; ``coherence_model`` only with coherence."""
        if self.select not in SELECTIONS:
            choices = ", ".join(SELECTIONS[:-1]) + f" or {SELECTIONS[-1]}"
            raise SettingError(f"{{select}} must be {choices}, not {literal(repr(self.select))}")
        if self.select != "score" and self.width < 2:
            raise SettingError(
                f"{{select}} {self.select} chooses among several candidates per poem: give "
                "{best_of} or {beam} of 2 or more"
            )
        if self.select != "score" and self.rerank_with:
            raise SettingError("choose {select} or {rerank_with}, not both", "select")
        if self.coherence_model is not None and self.select != "coherence":
            raise SettingError("{coherence_model} is read only with {select} coherence")

    def read_texts(self, table: CharTable) -> PoemRequest:
        """Each text by the one rule (text/normalise.py), every character known to the model."""
        known = table.index
        starts = tuple(known_text(table, s, "starts", "start text") for s in self.starts)
        if any(not s for s in starts):
            raise SettingError("a start text is empty", "starts")
        acrostic = known_text(table, self.acrostic, "acrostic")
        keywords = [
            known_text(table, k, "keywords", "keyword") for k in split_keywords(self.keywords)
        ]
        try:
            title = read_title(self.title, known)
            table.encode_poem("", title)  # raises for a model trained without titles
        except ValueError as err:
            raise SettingError(literal(str(err)), "title") from None
        prime = known_text(table, self.prime, "prime", "prime text")
        return dataclasses.replace(
            self,
            starts=starts,
            acrostic=acrostic,
            keywords=tuple(keywords),
            title=title,
            prime=prime,
        )

    def check_texts(self, table: CharTable) -> PoemRequest:
        """The texts against the options: an acrostic of characters and no start beside it,
        starts and prime that fit the poem, keywords that can all fit it."""
        odd = next((ch for ch in self.acrostic if not is_ideograph(ch)), None)
        if odd:
            raise SettingError(
                f"the acrostic {literal(repr(self.acrostic))} holds {literal(repr(odd))}; "
                "each line needs a Chinese character",
                "acrostic",
            )
        if self.acrostic and self.starts:
            raise SettingError(
                "{acrostic} sets the first character of every line, so no start text can be given"
            )
        for start in self.starts:
            check_layout(start, self.form_of)
        check_keywords(table, self.constraints(), list(self.starts), self.max_len)
        return self


def check_form(name: str | None) -> Form | None:
    """A form's name → the form, or SettingError naming ``form``."""
    try:
        return parse_form(name) if name else None
    except ValueError as err:
        raise SettingError(literal(str(err)), "form") from None


def free_poem_room(acrostic: str = "") -> int:
    """The characters a free poem may need: a couplet of the shortest verses,
    2 × (FREE_VERSE_MIN + 1), or, with an acrostic of n lines, n verses of the longest,
    n × (FREE_VERSE_MAX + 1)."""
    return len(acrostic) * (FREE_VERSE_MAX + 1) if acrostic else 2 * (FREE_VERSE_MIN + 1)


def fit_max_len(form: Form | None, max_len: int | None, acrostic: str = "") -> int:
    """``max_len`` against what a poem needs, so that nothing is silently cut → the length to
    write within: left unsaid (None), DEFAULT_MAX_LEN, raised for a free acrostic to what its
    lines may need. Raises SettingError where a form is given with another ``max_len`` (a form
    fixes the length, so it would be ignored), and for a free poem where it is below
    :func:`free_poem_room`."""
    if form is not None and max_len not in (None, DEFAULT_MAX_LEN):
        raise SettingError(
            f"a {form.name} has a fixed length ({form.lines} lines of {form.chars} characters), "
            "so {max_len} cannot be given with it"
        )
    needed = free_poem_room(acrostic)
    if max_len is None:
        return max(DEFAULT_MAX_LEN, needed) if acrostic and form is None else DEFAULT_MAX_LEN
    if form is None and max_len < needed:
        what = f"a {len(acrostic)}-line acrostic" if acrostic else "a free poem's shortest couplet"
        message = f"{what} may need {needed} characters: give at least {{max_len}} {needed}"
        raise SettingError(message)
    return max_len


def known_text(table: CharTable, text: str, field: str, what: str = "") -> str:
    """A user's text by the one text rule, every character known to the model; else
    SettingError naming ``field`` (``what`` names the text in the message)."""
    try:
        text = read_poem(text, table.index, what or field)
    except PoemTextError as err:
        raise SettingError(literal(str(err)), field) from None
    check_known(table, text, field)
    return text


class UnknownCharacterError(SettingError):
    """A character the model cannot read, in the field ``{field}`` the message names."""


def check_known(table: CharTable, text: str, field: str) -> None:
    """A text the model cannot read is an error naming the first offending character. Raises
    UnknownCharacterError (a SettingError) whose message names ``field``."""
    for ch in text:
        if ch not in table.index or ch in SPECIALS:
            raise UnknownCharacterError(
                f"the model does not know the character {literal(repr(ch))} in {{{field}}}"
            )


def check_length(start: str, form: Form | None, max_len: int) -> None:
    """A start text no longer than the poem (``max_len``, or the form's length); else
    SettingError naming ``starts``."""
    limit = form.lines * (form.chars + 1) if form else max_len
    if len(start) > limit:
        what = f"a {form.name}" if form else "{max_len}"
        raise SettingError(
            f"the start text {literal(repr(start[:20]))} ({len(start)} characters) is longer "
            f"than {what} ({limit})",
            "starts",
        )


def check_layout(start: str, form: Form | None) -> None:
    """A start text must follow the form's layout (characters, then ， or 。), as generation
    forces it; else SettingError naming ``starts``."""
    for k, ch in enumerate(start if form else ""):
        line, col = divmod(k, form.chars + 1)
        want = "，。"[line % 2] if col == form.chars else None
        if (want and ch != want) or (not want and not is_ideograph(ch)):
            raise SettingError(
                f"the start text {literal(repr(start))} does not fit a {form.name} at "
                f"{literal(repr(ch))}",
                "starts",
            )


def context_text(prime: str) -> str:
    """The prime as the model reads it: closed by a 。 where it ends without a mark."""
    return prime if not prime or prime[-1] in VERSE_ENDS else prime + "。"
