"""The JSON API's requests and responses, and the limits on every size.

The field names mirror the CLI's options (``--top-k`` → ``top_k``, ``--best-of`` → ``best_of``).
Every limit below is enforced by pydantic before any work starts, and appears in the OpenAPI
docs at ``/docs`` beside its field. Text in either script is accepted and read as simplified.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from poetry_lm.decoding.generate import (
    MAX_TEMPERATURE,
    SampleOptions,
    check_max_len,
    check_unused,
    free_poem_room,
)
from poetry_lm.prosody.forms import Constraints, parse_form
from poetry_lm.prosody.keywords import (
    MAX_KEYWORD_CHARS,
    MAX_KEYWORDS,
    check_keyword_limits,
    split_keywords,
)
from poetry_lm.settings import SettingError
from poetry_lm.text.corpus import MAX_TITLE_CHARS
from poetry_lm.text.normalise import read_title

# Limits: each bounds the work one request can ask for (rows × steps of decoding)
MAX_STARTS = 16  # start texts in one request
MAX_START_CHARS = 32  # characters in one start text
MAX_POEMS = 32  # poems in one request: starts × n
MAX_WIDTH = 16  # best-of candidates or beam hypotheses per poem
MAX_REQUEST_ROWS = 128  # decoding rows in one request: poems × width
MAX_LEN = 256  # characters of a free poem (max_len)
# a title as sent, with room for marks and spaces (《春望》（其一）): what it may hold (at most
# MAX_TITLE_CHARS Chinese characters) is checked by read_title, as the CLI checks --title
MAX_TITLE_TEXT = 4 * MAX_TITLE_CHARS
# a keywords element as sent: room for every keyword, each with a separator ("春 雨、归")
MAX_KEYWORD_TEXT = MAX_KEYWORDS * (MAX_KEYWORD_CHARS + 1)
MAX_PRIME_CHARS = 128
MAX_ACROSTIC_CHARS = 16
MAX_POEM_CHARS = 400  # a poem sent to score, check or rewrite
MAX_CANDIDATES = 8  # rewrite candidates
MAX_BODY_BYTES = 64 * 1024  # a request body, checked before it is parsed

Script = Literal["simplified", "traditional"]
# the API's names for SampleOptions fields that the CLI also renames
API_NAMES = {"repetition": "repetition_penalty", "same_place": "same_place_penalty"}


def fault(field: str, message: str) -> ValueError:
    """An error of the request as a whole, blamed on ``field``: its sentence begins with the
    field's name, as the error of a single field does (``app.validation_message``)."""
    return ValueError(f"{field}: {message}")


def setting_fault(err: SettingError, blamed: str = "the body") -> ValueError:
    """A SettingError of the rules the CLI shares (SampleOptions, Constraints) as a
    :func:`fault` of the field it names first (else of ``blamed``), every field in the API's
    names."""
    culprit = err.fields[0] if err.fields else blamed
    return fault(API_NAMES.get(culprit, culprit), err.worded(API_NAMES))


def from_options(name: str, **limits):
    """A request field for ``SampleOptions.name``: its default and help from the dataclass (as
    the CLI's options take theirs), its limits from here."""
    (f,) = [f for f in fields(SampleOptions) if f.name == name]
    return Field(f.default, description=f.metadata["help"], **limits)


class Request(BaseModel):
    """Unknown fields are an error, not silently ignored: a misspelt option would otherwise
    quietly do nothing. Strict types: a field of the wrong JSON type ("3" for an integer,
    "yes" for a boolean) is refused, never coerced (a JSON integer still reads as a float).
    nan and ±inf are refused as not finite, as the CLI refuses them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class Sampling(Request):
    temperature: float = from_options("temperature", gt=0, le=MAX_TEMPERATURE)
    top_k: int = from_options("top_k", ge=0, le=10000)
    top_p: float = from_options("top_p", gt=0, le=1)
    seed: int | None = Field(
        None,
        ge=0,
        le=2**32 - 1,  # the CLI's one seed rule
        description="The same seed and options write the same poems.",
    )
    script: Script = Field("simplified", description="Script of the poems returned.")


class GenerateRequest(Sampling):
    starts: list[str] = Field(
        [],
        max_length=MAX_STARTS,
        description=f"One poem (× n) per start text, each ≤ {MAX_START_CHARS} characters; "
        "none: the model chooses the first character.",
    )
    n: int = Field(1, ge=1, le=MAX_POEMS, description="Poems per start.")
    form: str | None = Field(
        None, description="五绝, 七绝, 五律 or 七律 (wujue … qilv); none: free."
    )
    acrostic: str = Field(
        "", max_length=MAX_ACROSTIC_CHARS, description="Line i begins with character i (藏头诗)."
    )
    rhyme: bool = Field(
        True,
        description="Even lines rhyme in one group, no rhyme twice (free poems too, once the "
        "first verse sets the length).",
    )
    rhyme_first: bool = Field(False, description="The first line rhymes too.")
    tones: bool | None = Field(
        None,
        description="Regulated 平仄 of 绝句 and 律诗; null: on with a form, off without one "
        "(true needs a form).",
    )
    no_repeat: bool = Field(False, description="No character twice in a poem.")
    keywords: list[Annotated[str, Field(max_length=MAX_KEYWORD_TEXT)]] = Field(
        [],
        max_length=MAX_KEYWORDS,
        description=f"Words the poem must hold, each inside one verse (主题词). Each element is "
        'split at spaces, commas and 、 as the CLI splits a --keywords value ("春 雨、归": '
        f"three keywords); then at most {MAX_KEYWORDS} keywords, each of 1 to "
        f"{MAX_KEYWORD_CHARS} characters (an element holding none is refused, as by the CLI).",
    )
    greedy: bool = from_options("greedy")
    best_of: int = from_options("best_of", ge=1, le=MAX_WIDTH)
    beam: int = from_options("beam", ge=0, le=MAX_WIDTH)
    # null is no title, as a poem's "title" is null without one
    title: str | None = from_options("title", max_length=MAX_TITLE_TEXT)
    prime: str = from_options("prime", max_length=MAX_PRIME_CHARS)
    repetition_penalty: float | None = from_options("repetition", ge=0, le=100)
    same_place_penalty: float | None = from_options("same_place", ge=0, le=100)
    max_len: int = from_options("max_len", ge=1, le=MAX_LEN)

    @field_validator("starts")
    @classmethod
    def _short_starts(cls, starts: list[str]) -> list[str]:
        for start in starts:
            if len(start) > MAX_START_CHARS:
                raise ValueError(f"a start text has at most {MAX_START_CHARS} characters")
        return starts

    @field_validator("form")
    @classmethod
    def _known_form(cls, form: str | None) -> str | None:
        return form and parse_form(form).name  # ValueError names the forms there are

    @field_validator("title")
    @classmethod
    def _readable_title(cls, title: str | None) -> str:
        """The CLI's rule for --title (read_title: a ValueError for a title with no Chinese
        character or too many); the title is kept as sent, for the model's own reading, and
        null becomes "" (no title)."""
        read_title(title or "")
        return title or ""

    @field_validator("keywords")
    @classmethod
    def _split_keywords(cls, keywords: list[str]) -> list[str]:
        """The CLI's rule for --keywords: split, none empty; the limits, on the keywords."""
        return check_keyword_limits(split_keywords(keywords))

    @model_validator(mode="after")
    def _bounded(self) -> GenerateRequest:
        """Limits across fields, each error blamed on one of them (``fault``)."""
        poems = max(len(self.starts), 1) * self.n
        if poems > MAX_POEMS:
            raise fault("n", f"at most {MAX_POEMS} poems per request (starts × n), not {poems}")
        form = self.form and parse_form(self.form)
        if form is None and self.acrostic and "max_len" not in self.model_fields_set:
            self.max_len = max(self.max_len, free_poem_room(self.acrostic))  # as the CLI does
        try:  # the CLI's rules, from their one home: options at odds with each other
            Constraints.from_options(
                form=form, rhyme=self.rhyme, rhyme_first=self.rhyme_first, tones=self.tones
            )
            check_max_len(form, self.max_len, self.acrostic)
        except SettingError as err:
            raise setting_fault(err) from None
        for field, texts in (("starts", self.starts), ("prime", [self.prime])):
            for text in texts:  # as the CLI: never cut silently
                if len(text) > self.max_len:
                    message = f"{text!r} is longer than max_len ({self.max_len} characters)"
                    raise fault(field, message)
        try:  # options at odds, or sent and never read by the decoding asked for
            check_unused(self.sample_options(), self.model_fields_set)
        except SettingError as err:
            raise setting_fault(err) from None
        rows = poems * (self.beam or self.best_of)
        if rows > MAX_REQUEST_ROWS:
            message = f"at most {MAX_REQUEST_ROWS} rows per request (poems × best_of or beam)"
            raise fault("beam" if self.beam else "best_of", message)
        return self

    def sample_options(self, title: str = "", prime: str = "") -> SampleOptions:
        """The request's SampleOptions, for the title and prime as the model reads them.
        Raises SettingError, as for the CLI's options."""
        return SampleOptions(
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            greedy=self.greedy,
            max_len=self.max_len,
            best_of=self.best_of,
            beam=self.beam,
            title=title,
            prime=prime,
            repetition=self.repetition_penalty,
            same_place=self.same_place_penalty,
        )


class PoemText(Request):
    text: str = Field(
        ...,
        min_length=1,
        max_length=MAX_POEM_CHARS,
        description="A poem in either script, punctuated (，。); spaces and newlines are ignored.",
    )


class ScoreRequest(PoemText):
    pass


class CheckRequest(PoemText):
    pass


class ConvertRequest(Request):
    text: str = Field(..., max_length=MAX_POEM_CHARS * 4)
    script: Script


class RewriteRequest(Sampling, PoemText):
    line: int = Field(..., ge=0, description="The 0-based index of the verse to rewrite.")
    n: int = Field(4, ge=1, le=MAX_CANDIDATES, description="Candidates wanted.")


# Responses
class Poem(BaseModel):
    """A poem as the CLI's ``--format json`` writes it, with each character's tone."""

    title: str | None = Field(
        None,
        description="The title it was written for, as the model read it (its Chinese characters), "
        "in the poem's script; null when none.",
    )
    text: str
    lines: list[str]
    form: str | None = Field(description="Its form (五绝 …), in the poem's script; null: free.")
    rhyme: list[str] = Field(description="The 平水韵 group(s) its rhymes share.")
    score: float = Field(description="Mean log-probability per token, the end included.")
    logprobs: list[float] = Field(description="Log-probability of each character of text.")
    tones: list[str] = Field(description="Per character: 平, 仄, 平仄 (either) or '' (unknown).")
    rhymes: list[int] = Field(description="Indices into text of its rhyming characters.")
    truncated: bool = Field(False, description="max_len ended it, at its last whole verse.")


class GenerateResponse(BaseModel):
    poems: list[Poem]


class ScoreResponse(BaseModel):
    text: str
    perplexity: float
    surprisal: float = Field(description="Total, nats.")
    tokens: int
    unknown: int
    per_token: list[tuple[str, float]] = Field(description="(token, nats), the end included.")


class RewriteResponse(BaseModel):
    line: int
    candidates: list[Poem] = Field(description="The whole poem with each new line, best first.")


class ConvertResponse(BaseModel):
    text: str


class Health(BaseModel):
    status: str
    model: str
    vocabulary: int
    titles: bool = Field(description="Whether the model reads a title (generate's title).")
    batches: int = Field(description="Decoding batches run so far (requests batched together).")
    decode_cpu_s: float = Field(description="CPU seconds the decoding thread has used so far.")


class CharCheck(BaseModel):
    char: str
    line: int = Field(description="1-based.")
    position: int = Field(description="1-based, within the line.")
    tone: str = Field(description="平, 仄, either or unknown.")
    reading: list[str] = Field(description="The rhyme group(s) giving the tone used here.")
    rhyme: str | None = Field(description="The rhyme group, for a rhyming character.")


class Fault(BaseModel):
    term: str = Field(description="失粘, 失对, 出韵, 重韵, 孤平, 三平尾 or 三仄尾.")
    line: int
    position: int
    message: str


class CheckResponse(BaseModel):
    """格律 of a poem, as ``poetry-lm check --format json`` gives it."""

    text: str
    lines: list[str]
    form: str = Field(description="五绝, 七绝, 五律, 七律, or 古体 (not regulated).")
    regulated: bool
    rhyme_group: str | None
    chars: list[CharCheck]
    faults: list[Fault]
    clean: bool
