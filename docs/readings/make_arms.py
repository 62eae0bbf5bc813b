"""The poems of one blind reading: real test poems and generated arms, as the protocol in
../shared/blind/ asks (JSON lists of {form, text} and {arm, form, text}).

python docs/readings/make_arms.py OUT_DIR --seed S --arm NAME=OPTIONS ... [--per-form 5]
    [--exclude docs/readings/c-heard/real.json ...]

Every generated poem has its own start (a first character of a random Tang train poem) and its
own seed; real poems are drawn from the test split, none of them shorter forms' fragments."""

import argparse
import json
import random
import shlex
from pathlib import Path

from poetry_lm.prosody.check import check_poem
from poetry_lm.request import PoemRequest
from poetry_lm.text.corpus import load_corpus
from poetry_lm.writing.writer import Writer

FORMS = ("五绝", "七绝", "五律", "七律")


def real_poems(rng: random.Random, per_form: int, used: set[str]) -> list[dict]:
    """``per_form`` test poems of each form, none of those ``used`` by earlier readings."""
    by_form: dict[str, list[str]] = {f: [] for f in FORMS}
    for poem in load_corpus()["test"]:
        check = check_poem(poem.text)
        if check.form in by_form and check.text not in used:
            by_form[check.form].append(check.text)
    return [{"form": f, "text": t} for f in FORMS for t in rng.sample(by_form[f], per_form)]


def arm_poems(writer, rng, name: str, options: str, per_form: int) -> list[dict]:
    """``options``: PoemRequest fields as key=value words (``heard=false temperature=0.6``)."""
    fields = {}
    for word in shlex.split(options):
        key, value = word.split("=")
        try:  # a number, true/false, or a word as it is (worst-verse, 五绝)
            fields[key] = json.loads(value)
        except json.JSONDecodeError:
            fields[key] = value
    starts = [p.text[0] for p in rng.sample(load_corpus()["train"], 4 * per_form)]
    poems = []
    for i, start in enumerate(starts):
        form = FORMS[i // per_form]
        request = PoemRequest.of(starts=(start,), form=form, seed=rng.randrange(2**31), **fields)
        poems.append({"arm": name, "form": form, "text": writer.write(request)[0].text})
    return poems


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--per-form", type=int, default=5)
    parser.add_argument("--arm", action="append", default=[], help="NAME=OPTIONS")
    parser.add_argument(
        "--exclude", action="append", default=[], type=Path,
        help="an earlier reading's real.json: its poems are not drawn again",
    )  # fmt: skip
    args = parser.parse_args()
    used = {p["text"] for path in args.exclude for p in json.loads(path.read_text())}
    rng = random.Random(args.seed)
    writer = Writer()
    args.out.mkdir(parents=True, exist_ok=True)
    real = real_poems(rng, args.per_form, used)
    generated = []
    for arm in args.arm:
        name, _, options = arm.partition("=")
        generated += arm_poems(writer, rng, name, options, args.per_form)
    (args.out / "real.json").write_text(json.dumps(real, ensure_ascii=False, indent=0))
    (args.out / "generated.json").write_text(json.dumps(generated, ensure_ascii=False, indent=0))
    print(f"{len(real)} real and {len(generated)} generated poems in {args.out}")


if __name__ == "__main__":
    main()
