"""Rewriting one verse of a poem: new versions of it, sampled after the verses before it, that
keep its length, its closing mark and, in a form poem, the form (the rhyme, or a 仄 ending),
ranked by the log-probability of the whole poem, the later verses and the end included, so that
a line that fits what follows wins.
"""

from __future__ import annotations

import torch

from poetry_lm.decoding.loop import verses
from poetry_lm.decoding.strategy import sample_step
from poetry_lm.model.stepper import Stepper
from poetry_lm.prosody.forms import FORMS, VERSE_ENDS, Form, token_masks
from poetry_lm.prosody.rhyme import PING, rhyme_groups
from poetry_lm.request import Sampling
from poetry_lm.text.corpus import is_ideograph
from poetry_lm.text.vocab import CharTable

Rewritten = tuple[str, list[float], float]  # (poem, each character's log-probability, mean)


def recognise_form(lines: list[str]) -> Form | None:
    """4 or 8 verses of 5 or 7 characters, each closed by a mark → that form, else None."""
    for form in FORMS.values():
        if len(lines) == form.lines and all(
            len(line) == form.chars + 1 and line[-1] in VERSE_ENDS for line in lines
        ):
            return form
    return None


def verse_parts(text: str, index: int) -> tuple[str, str, str]:
    """(the verses before verse ``index``, its characters, its mark and the verses after).
    Raises ValueError for a missing verse or a verse without characters."""
    lines = verses(text)
    if not 0 <= index < len(lines):
        raise ValueError(f"the poem has {len(lines)} verses, so line must be 0 to {len(lines) - 1}")
    target = lines[index]
    body = target[:-1] if target[-1] in VERSE_ENDS else target
    if not body or not all(map(is_ideograph, body)):
        raise ValueError(f"verse {index} must be characters and one closing mark")
    return "".join(lines[:index]), body, target[len(body) :] + "".join(lines[index + 1 :])


def rhyme_of(lines: list[str], skip: int | None = None) -> tuple[list[str], bool]:
    """A form poem's verses → the 平 groups that the last characters of its rhyming verses
    (every second one, verse ``skip`` left out) all belong to, and whether the first verse
    rhymes with them too (首句入韵). ([], False) for a poem of no form or no common group."""
    if recognise_form(lines) is None:
        return [], False
    ends = [line[-2] for line in lines]
    others = [ends[i] for i in range(1, len(lines), 2) if i != skip]
    groups = [g for g in rhyme_groups() if g.tone == PING and all(c in g.chars for c in others)]
    return [g.name for g in groups], any(ends[0] in g.chars for g in groups)


def last_character_rule(table: CharTable, lines: list[str], index: int) -> torch.Tensor:
    """(V,) the characters allowed at the end of verse ``index`` by the poem's form: on a
    rhyming verse a character of a 平 group the other rhymes share, none of them repeated (no
    重韵); on another verse a 仄 one."""
    V = len(table)
    if recognise_form(lines) is None:
        return torch.ones(V, dtype=torch.bool)
    masks = token_masks(table)
    names, first_rhymes = rhyme_of(lines, skip=index)
    if not (index % 2 == 1 or (index == 0 and first_rhymes)):
        return masks.end_fits[1] > 0  # a verse that does not rhyme ends 仄, as heard
    if not names:  # the other verses share no group: nothing to rhyme with
        return torch.ones(V, dtype=torch.bool)
    fits = masks.group_fits[[i for i, g in enumerate(masks.group_names) if g in names]]
    allowed = fits.sum(0) > 0
    ends = [line[-2] for line in lines]  # not another verse's rhyme
    taken = [
        ends[i] for i in range(len(lines)) if i != index and (i % 2 or (i == 0 and first_rhymes))
    ]
    allowed[[table.index[c] for c in taken if c in table.index]] = False
    return allowed


@torch.inference_mode()
def rewrite(
    step: Stepper,
    table: CharTable,
    text: str,
    index: int,
    n: int,
    sampling: Sampling,
    generator: torch.Generator,
) -> list[Rewritten]:
    """Up to ``n`` new versions of verse ``index`` of ``text`` (every character known to the
    model), each as (whole poem, the log-probability of each of its characters, the mean over
    its tokens with the end), likeliest poem first. Raises ValueError for a missing verse or a
    verse without characters."""
    prefix, body, suffix = verse_parts(text, index)
    masks = token_masks(table)
    last = masks.ideographs & last_character_rule(table, verses(text), index)  # (V,)
    K = min(4 * n, 32)  # sampled, then deduplicated and ranked
    logprobs, (logp, state) = read_prefix(step, [table.bos, *table.encode(prefix)])
    logp = logp.expand(K, -1)  # (K, V): the verse's first character
    state = state.select(torch.zeros(K, dtype=torch.long))  # the prefix's, for every row
    uniforms = torch.rand(len(body), K, generator=generator).numpy()
    written, chosen = [], []  # (K,) tokens and their log-probabilities, per step
    for j in range(len(body)):
        mask = (last if j == len(body) - 1 else masks.ideographs).expand(K, -1)
        ids = torch.from_numpy(sample_step(logp.numpy(), mask.numpy(), uniforms[j], sampling))
        written.append(ids)
        chosen.append(logp[torch.arange(K), ids])  # the model's own, unmasked
        logp, state = step(ids, state)
    for token in [*table.encode(suffix), table.eos]:  # score what follows
        chosen.append(logp[:, token])
        logp, state = step(torch.full((K,), token), state)
    written, chosen = torch.stack(written, 1), torch.stack(chosen, 1)  # (K, L), (K, L + S)
    ranked = sorted(range(K), key=lambda k: -float(chosen[k].sum()))
    out, seen = [], {body}
    for k in ranked:
        line = table.decode(written[k].tolist())
        if line not in seen and len(out) < n:
            seen.add(line)
            every = logprobs + chosen[k].tolist()  # each token's, the end's last
            out.append((prefix + line + suffix, every[:-1], sum(every) / len(every)))
    return out


def read_prefix(step: Stepper, ids: list[int]):
    """Read ``ids`` one at a time → (the log-probability of each after the first, the model's
    output and state after the last)."""
    logprobs, state = [], None
    for k, token in enumerate(ids):
        logp, state = step(torch.tensor([token]), state)
        if k + 1 < len(ids):
            logprobs.append(float(logp[0, ids[k + 1]]))
    return logprobs, (logp, state)
