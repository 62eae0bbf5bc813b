"""A coherence scorer: does each verse belong with the others?

Trained (``python -m poetry_lm.tools.coherence train``) to tell a real Tang poem from the same
poem with one verse swapped for another poem's verse at the same place
(:mod:`poetry_lm.evaluation.swaps`), it gives a poem a logit: higher is likelier a whole poem.
Selection (:mod:`poetry_lm.decoding.select`) keeps the candidate of the highest.

The model is small and plain, per-verse encodings compared: each verse (marks dropped) read
alone, its characters embedded (E = 64) and read both ways by a bidirectional LSTM (H = 128
each way), its last states the verse's vector; the verse vectors read in order by a second,
smaller bidirectional LSTM (64 each way), pooled over the poem (mean and max) and a linear head
to one logit. The vocabulary is the shipped model's, so any poem the poet writes can be
scored. The weights are stored in float16 (2 bytes each: ~2 MB), read back as float32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from poetry_lm.model.errors import CheckpointError
from poetry_lm.paths import missing_hint
from poetry_lm.prosody.masks import VERSE_ENDS
from poetry_lm.text.vocab import CharTable

FORMAT = "poetry_lm/coherence/1"


@dataclass(frozen=True)
class CoherenceConfig:
    vocab_size: int
    embed: int = 64  # E: character embedding size
    hidden: int = 128  # H: the verse reader's LSTM units each way
    poem_hidden: int = 64  # the poem reader's LSTM units each way
    dropout: float = 0.1  # on the embeddings and the pooled vector, in training only


class CoherenceModel(nn.Module):
    """Each verse read alone (embedding → bidirectional LSTM → its last states both ways), then
    the verse vectors read in order by a second bidirectional LSTM, pooled (mean and max) →
    one logit per poem."""

    def __init__(self, config: CoherenceConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed)
        self.verse = nn.LSTM(config.embed, config.hidden, batch_first=True, bidirectional=True)
        self.poem = nn.LSTM(
            2 * config.hidden, config.poem_hidden, batch_first=True, bidirectional=True
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(4 * config.poem_hidden, 1)

    def forward(self, ids: torch.Tensor, chars: torch.Tensor, verses: torch.Tensor):
        """(B, L, C) character ids of each poem's verses, right-padded; (B, L) characters per
        verse (0 for padding); (B,) verses per poem → (B,) logits."""
        B, L, C = ids.shape
        x = self.drop(self.embed(ids.view(B * L, C)))  # (B·L, C, E)
        lengths = chars.view(B * L).clamp(min=1)  # a padding verse reads one <pad>
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, True, enforce_sorted=False)
        _, (h, _) = self.verse(packed)  # (2, B·L, H): each verse read both ways
        v = torch.cat([h[0], h[1]], 1).view(B, L, -1)  # (B, L, 2H)
        packed = nn.utils.rnn.pack_padded_sequence(v, verses, True, enforce_sorted=False)
        out, _ = self.poem(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, True, total_length=L)  # (B, L, 2P)
        live = (torch.arange(L) < verses[:, None])[..., None]  # (B, L, 1)
        mean = (out * live).sum(1) / verses[:, None]
        top = out.masked_fill(~live, float("-inf")).amax(1)
        return self.head(self.drop(torch.cat([mean, top], 1))).squeeze(1)


def split_verses(text: str) -> list[str]:
    """A poem's verses, their marks dropped (a text without marks is one verse)."""
    verses, current = [], ""
    for ch in text:
        if ch in VERSE_ENDS:
            verses.append(current)
            current = ""
        else:
            current += ch
    return [v for v in [*verses, current] if v] or [text]


def encode(table: CharTable, texts: list[str]) -> tuple[torch.Tensor, ...]:
    """Poems → (B, L, C) ids of their verses right-padded with ``<pad>``, (B, L) characters
    per verse, (B,) verses per poem: :meth:`CoherenceModel.forward`'s arguments."""
    poems = [[table.encode(v) or [table.unk] for v in split_verses(t)] for t in texts]
    L = max(map(len, poems))
    C = max(len(v) for verses in poems for v in verses)
    ids = torch.full((len(poems), L, C), table.pad, dtype=torch.long)
    chars = torch.zeros((len(poems), L), dtype=torch.long)
    for i, verses in enumerate(poems):
        for j, verse in enumerate(verses):
            ids[i, j, : len(verse)] = torch.tensor(verse)
            chars[i, j] = len(verse)
    return ids, chars, torch.tensor([len(verses) for verses in poems])


def save_scorer(path: Path | str, model: CoherenceModel, table: CharTable, **extra) -> None:
    """The scorer, its config, vocabulary and any plain-data ``extra`` (its metrics) in one
    file, read back by :func:`load_scorer`."""
    payload = {
        "format": FORMAT,
        "config": asdict(model.config),
        "vocab": list(table.tokens),
        "model": {k: v.half() for k, v in model.state_dict().items()},  # 2 bytes a weight
        **extra,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)


class Scorer:
    """A trained coherence scorer, loaded once: :meth:`scores` of poems."""

    def __init__(self, path: Path | str):
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path} does not exist{missing_hint(path)}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if payload.get("format") != FORMAT:
                raise ValueError(payload.get("format"))
            self.model = CoherenceModel(CoherenceConfig(**payload["config"]))
            self.model.load_state_dict({k: v.float() for k, v in payload["model"].items()})
        except Exception as err:  # torch raises many types for a damaged or foreign file
            raise CheckpointError(
                f"{path} is damaged or not a coherence scorer ({type(err).__name__})"
            ) from None
        self.model.eval()
        self.table = CharTable(payload["vocab"])
        self.metrics = payload.get("metrics", {})

    @torch.inference_mode()
    def scores(self, texts: list[str]) -> list[float]:
        """Each poem's logit (higher: likelier a whole poem), all in one batch: a text's score
        depends on the batch it is in only through float rounding, so a caller that needs the
        same figure every time scores the same group together."""
        return self.model(*encode(self.table, texts)).double().tolist()
