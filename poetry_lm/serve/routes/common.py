"""What the generate and rewrite routes share: a poem in the API's view."""

from __future__ import annotations

from poetry_lm.decoding.loop import verses
from poetry_lm.serve import schemas as s
from poetry_lm.serve.poet import tone_marks
from poetry_lm.text.corpus import to_traditional


def poem_out(
    text: str,
    form: str | None,
    logprobs: list[float],
    score: float,
    rhyme: list[str],
    rhymes: list[int],
    script: str,
    truncated: bool = False,
    title: str = "",
) -> s.Poem:
    """A poem (simplified) and its form's name → the API's view of it, in ``script`` (the form's
    name and the title it was written for too; None where there is none). Tones are read from
    the simplified text; a conversion that changes the length keeps the simplified text, so
    that per-character fields stay aligned."""
    script_of = to_traditional if script == "traditional" else str
    shown = script_of(text)
    if len(shown) != len(text):
        shown = text
    return s.Poem(
        title=script_of(title) or None,
        text=shown,
        lines=verses(shown),
        form=form and script_of(form),
        rhyme=[script_of(g) for g in rhyme],
        score=round(score, 4),
        logprobs=[round(lp, 4) for lp in logprobs],
        tones=tone_marks(text),
        rhymes=rhymes,
        truncated=truncated,
    )
