"""The JSON API's requests and responses, and the limits on every size.

The field names mirror the CLI's options (``--top-k`` → ``top_k``, ``--best-of`` → ``best_of``).
Every limit below is enforced by pydantic before any work starts, and appears in the OpenAPI
docs at ``/docs`` beside its field. Text in either script is accepted and read as simplified.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from poetry_lm.prosody.check import FAULT_TERMS
from poetry_lm.prosody.keywords import MAX_KEYWORD_CHARS, MAX_KEYWORDS
from poetry_lm.request import PoemRequest, Sampling
from poetry_lm.settings import SettingError
from poetry_lm.text.corpus import MAX_TITLE_CHARS

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
MAX_DEPTH = 32  # arrays and objects nested in a body (a request needs 2), checked before it too
MAX_FORM_CHARS = 8  # a form's name: 五绝 … 七律, wujue … qilv
MAX_SEED = 2**32 - 1  # the CLI's one seed rule

Script = Literal["simplified", "traditional"]
# the API's own limits on sampling fields, beyond the ranges Sampling gives them
SAMPLING_LIMITS = {
    "top_k": dict(le=10000),
    "beam": dict(le=MAX_WIDTH),
    "repetition_penalty": dict(le=100),
    "same_place_penalty": dict(le=100),
}


def fault(field: str, message: str) -> ValueError:
    """An error of the request as a whole, blamed on ``field``: its sentence begins with the
    field's name, as the error of a single field does (``errors.validation_message``), once:
    "tones needs a form", not "tones: tones needs a form"."""
    return ValueError(message if message.startswith(f"{field} ") else f"{field}: {message}")


def setting_fault(err: SettingError, blamed: str = "the body") -> ValueError:
    """A SettingError of PoemRequest's rules as a :func:`fault` of the field it names first
    (else of ``blamed``)."""
    return fault(err.fields[0] if err.fields else blamed, str(err))


def from_field(cls, name: str, **limits):
    """(type, Field) of a request field for the dataclass field ``cls.name``: its default, help
    and range from the dataclass (as the CLI's options take theirs), more limits from here."""
    (f,) = [f for f in fields(cls) if f.name == name]
    low, high, low_open = f.metadata.get("range", (None, None, False))
    bounds = {("gt" if low_open else "ge"): low} if low is not None else {}
    bounds.update({"le": high} if high is not None else {}, **limits)
    kind = eval(f.type, {})  # "int | None" → int | None
    return kind, Field(f.default, description=f.metadata["help"], **bounds)


class Request(BaseModel):
    """Unknown fields are an error, not silently ignored: a misspelt option would otherwise
    quietly do nothing. Strict types: a field of the wrong JSON type ("3" for an integer,
    "yes" for a boolean) is refused, never coerced (a JSON integer still reads as a float).
    nan and ±inf are refused as not finite, as the CLI refuses them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class Seeded(Request):
    seed: int | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description="The same seed and options write the same poems; none: a random one.",
    )
    script: Script = Field("simplified", description="Script of the poems returned.")


class GenerateFields(Seeded):
    """A generate request's fields but Sampling's (GenerateRequest adds them, from Sampling):
    shapes and size limits here; every other rule is PoemRequest.check's."""

    starts: list[Annotated[str, Field(max_length=MAX_START_CHARS)]] = Field(
        [],
        max_length=MAX_STARTS,
        description=f"One poem (× n) per start text, each ≤ {MAX_START_CHARS} characters; "
        "none: the model chooses the first character.",
    )
    n: int = Field(1, ge=1, le=MAX_POEMS, description="Poems per start.")
    form: str | None = Field(
        None,
        max_length=MAX_FORM_CHARS,
        description="五绝, 七绝, 五律 or 七律 (wujue … qilv); none: free.",
    )
    acrostic: str = Field(
        "", max_length=MAX_ACROSTIC_CHARS, description="Line i begins with character i (藏头诗)."
    )
    rhyme: bool = Field(
        True,
        description="Even lines rhyme in one group, no rhyme twice (free poems too, once the "
        "first verse sets the length).",
    )
    rhyme_first: bool | None = Field(
        None,
        description="The first line always rhymes (true) or never (false); null: each poem "
        "draws it at the rate of real poems of its form (七言 ~75%, 五言 ~15%).",
    )
    heard: bool = from_field(PoemRequest, "heard")[1]
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
    best_of: int = from_field(PoemRequest, "best_of", le=MAX_WIDTH)[1]
    # the server reads the coherence scorer at its default path (models/coherence.pt)
    select: str = from_field(PoemRequest, "select", max_length=16)[1]
    # null is no title, as a poem's "title" is null without one
    title: str | None = Field(
        None, max_length=MAX_TITLE_TEXT, description=from_field(PoemRequest, "title")[1].description
    )
    prime: str = from_field(PoemRequest, "prime", max_length=MAX_PRIME_CHARS)[1]
    max_len: int | None = from_field(PoemRequest, "max_len", le=MAX_LEN)[1]

    def poem_request(self) -> PoemRequest:
        """The PoemRequest this asks for, the fields sent counted as given."""
        values = self.model_dump(exclude={"script"})
        values.update(starts=tuple(self.starts), keywords=tuple(self.keywords))
        values["title"] = values["title"] or ""
        return PoemRequest.of(**values, given=frozenset(self.model_fields_set))

    @model_validator(mode="after")
    def _bounded(self):
        """Limits across fields, then PoemRequest's rules that need no model; each error
        blamed on one field (``fault``)."""
        poems = max(len(self.starts), 1) * self.n
        if poems > MAX_POEMS:
            raise fault("n", f"at most {MAX_POEMS} poems per request (starts × n), not {poems}")
        rows = poems * (self.beam or self.best_of)
        if rows > MAX_REQUEST_ROWS:
            message = f"at most {MAX_REQUEST_ROWS} rows per request (poems × best_of or beam)"
            raise fault("beam" if self.beam else "best_of", message)
        try:
            self.poem_request().check()
        except SettingError as err:
            raise setting_fault(err) from None
        return self


GenerateRequest = create_model(
    "GenerateRequest",
    __base__=GenerateFields,
    __doc__="A generate request: the options of ``poetry-lm generate``.",
    **{
        f.name: from_field(Sampling, f.name, **SAMPLING_LIMITS.get(f.name, {}))
        for f in fields(Sampling)
    },
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


class RewriteRequest(Seeded, PoemText):
    line: int = Field(..., ge=0, description="The 0-based index of the verse to rewrite.")
    n: int = Field(4, ge=1, le=MAX_CANDIDATES, description="Candidates wanted.")
    temperature: float = from_field(Sampling, "temperature")[1]
    top_k: int = from_field(Sampling, "top_k", **SAMPLING_LIMITS["top_k"])[1]
    top_p: float = from_field(Sampling, "top_p")[1]

    def sampling(self) -> Sampling:
        return Sampling(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)


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
    seed: int = Field(
        description="The seed used (drawn when none was sent): sent back with the "
        "same options, it writes the same poems."
    )
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
    term: str = Field(description=f"One of {', '.join(FAULT_TERMS)}.")
    line: int = Field(description="1-based: the line of the character at fault.")
    position: int = Field(
        description="1-based, within the line: the character at fault (as in chars; the "
        "first of the three for 三平尾 and 三仄尾)."
    )
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
