"""What the settings dataclasses share: a field with its help text, and the error for a setting
that is out of range or at odds with another.

``ModelConfig``, ``TrainConfig`` and ``SampleOptions`` hold the shipped recipe as their defaults;
the command line reads its option defaults and help from their fields (``poetry_lm.options``),
so each default is written once, and each check is made once, in the dataclass's
``__post_init__``.
"""

from __future__ import annotations

import string
from dataclasses import field, fields


def setting(default, help: str, low=None, high=None, low_open: bool = False):
    """A dataclass field with a default and a one-sentence help text (shown by ``--help``), and
    for a number its range (``low`` to ``high``, either None for no bound; ``low_open``: low
    itself is out), which :func:`check_range` checks and the CLI and the API declare.

    A list default is given as a factory, as dataclasses require."""
    metadata = {"help": help, "range": (low, high, low_open)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def check_range(settings) -> None:
    """Raise SettingError naming the first field of the dataclass ``settings`` whose value (not
    None) lies outside the range its :func:`setting` gave."""
    for f in fields(settings):
        low, high, low_open = f.metadata.get("range", (None, None, False))
        value = getattr(settings, f.name)
        if value is None or (low is None and high is None):
            continue
        below = value <= low if low_open else value < low if low is not None else False
        if below or (high is not None and value > high):
            raise SettingError(
                f"{{{f.name}}} must be {range_words(low, high, low_open)}, not {value}"
            )


def range_words(low, high, low_open: bool = False) -> str:
    """A range as the messages word it: "in (0, 1]", "1 to 64", "0 or more", "more than 0"."""
    if high is None:
        return f"more than {low:g}" if low_open else f"{low:g} or more"
    if low_open or isinstance(low, float) or isinstance(high, float):
        return f"in {'(['[not low_open]}{low:g}, {high:g}]"
    return f"{low} to {high}"


class SettingError(ValueError):
    """A setting out of range, or at odds with another.

    The message names settings as ``{field}`` placeholders, so that ``str(err)`` shows the field
    names (``bf16 needs device cuda``) and the command line its option names (``--bf16 needs
    --device cuda``): see :meth:`worded`. ``fields`` lists them in order, the culprit first.
    """

    def __init__(self, template: str, culprit: str | None = None):
        self.template = template
        self.fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
        if culprit is not None:  # at fault, though the message need not name it
            self.fields = [culprit, *(f for f in self.fields if f != culprit)]
        super().__init__(self.worded({}))

    def worded(self, names: dict[str, str]) -> str:
        """The message with each field named by ``names`` (field → name), else by itself."""
        return self.template.format(**{f: names.get(f, f) for f in self.fields})


def literal(text: str) -> str:
    """User text to quote in a SettingError's message: its braces are no placeholders."""
    return text.replace("{", "{{").replace("}", "}}")
