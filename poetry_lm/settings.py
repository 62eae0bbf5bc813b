"""What the settings dataclasses share: a field with its help text, and the error for a setting
that is out of range or at odds with another.

``ModelConfig``, ``TrainConfig`` and ``SampleOptions`` hold the shipped recipe as their defaults;
the command line reads its option defaults and help from their fields (``poetry_lm.options``),
so each default is written once, and each check is made once, in the dataclass's
``__post_init__``.
"""

from __future__ import annotations

import string
from dataclasses import field


def setting(default, help: str):
    """A dataclass field with a default and a one-sentence help text (shown by ``--help``).

    A list default is given as a factory, as dataclasses require."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


class SettingError(ValueError):
    """A setting out of range, or at odds with another.

    The message names settings as ``{field}`` placeholders, so that ``str(err)`` shows the field
    names (``bf16 needs device cuda``) and the command line its option names (``--bf16 needs
    --device cuda``): see :meth:`worded`. ``fields`` lists them in order, the culprit first.
    """

    def __init__(self, template: str):
        self.template = template
        self.fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
        super().__init__(self.worded({}))

    def worded(self, names: dict[str, str]) -> str:
        """The message with each field named by ``names`` (field → name), else by itself."""
        return self.template.format(**{f: names.get(f, f) for f in self.fields})
