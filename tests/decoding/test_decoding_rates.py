"""What decoding writes, over 200 poems per setting, judged by the checker of
``poetry_lm.tools.decoding_stats``, which reads the rhyme table file itself and imports neither
``prosody/forms.py`` nor ``prosody/rhyme.py`` (checked below): no 重韵, repetition within 1.5× of
the train split's rate for the form, no repeated verse, few train verses, beams that differ,
free poems that close and rhyme."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from poetry_lm.cli.write import generate_command
from poetry_lm.text.corpus import load_corpus
from poetry_lm.tools.decoding_stats import (
    IMAGERY,
    at_head,
    covered,
    generated_texts,
    keyword_sets,
    poem_flags,
    rates_of,
    shape_of,
    train_verse_index,
    with_keywords,
)

MODEL = str(Path(__file__).resolve().parents[2] / "models" / "poetry_lm.pt")


def test_the_checker_imports_no_generation_rule():
    code = (
        "import sys, poetry_lm.tools.decoding_stats as s; s.rhyme_table();"
        "assert not {'poetry_lm.prosody.forms', 'poetry_lm.prosody.rhyme'} & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_checker_flags_what_it_should():
    clean = poem_flags("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。")
    assert (
        clean["rhymes"]
        and clean["closed"]
        and not any(
            clean[k] for k in ("char3", "same_place", "repeated_verse", "chongyun", "double_mark")
        )
    )
    bad = poem_flags("春风吹春水，春水绿春楼。春风吹春水，春水绿春楼，")
    assert bad["char3"] and bad["repeated_verse"] and bad["chongyun"] and not bad["closed"]
    assert poem_flags("山中人不见，山外鸟飞回。")["same_place"]
    # a first verse in the rhyme group rhymes (首句入韵): its character again is 重韵
    assert poem_flags("月照青山树影深，云开远水照人心。风吹古寺钟声远，鸟啼秋草海门深。")[
        "chongyun"
    ]
    assert poem_flags("明月照高楼，清风满一山。。")["double_mark"]
    assert not poem_flags("明月照高楼，清风满一山。")["rhymes"]  # 楼 alone: one even verse
    assert shape_of("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。") == "五绝"


@pytest.fixture(scope="module")
def corpus():
    splits = load_corpus()
    train = [p.text for p in splits["train"]]
    by_shape = {}
    for text in train:
        by_shape.setdefault(shape_of(text), []).append(text)
    return {shape: rates_of(texts) for shape, texts in by_shape.items()}, train_verse_index(train)


@pytest.mark.parametrize("setting, form", [("七律", "七律"), ("beam-五绝", "五绝")])
def test_form_poems_repeat_no_more_than_poets(corpus, setting, form):
    rates, index = corpus
    texts = generated_texts(setting, 200, 11, MODEL)
    got = rates_of(texts, index)
    assert got.poems == 200 and all(shape_of(t) == form for t in texts)
    assert got.rates["chongyun"] <= 0.01 and got.rates["repeated_verse"] == 0
    for name in ("char3", "same_place"):
        assert got.rates[name] <= 1.5 * rates[form].rates[name], (name, got.rates[name])
    assert got.copied <= 0.01
    assert len(set(texts)) == 200


def test_a_first_verse_that_rhymes_is_not_rhymed_again(corpus):
    """Seed 0 wrote three such 七律 of 200 when only the even verses were kept distinct."""
    texts = generated_texts("七律", 200, 0, MODEL)
    assert rates_of(texts, corpus[1]).rates["chongyun"] == 0


def test_free_poems_close_rhyme_and_never_double_a_mark(corpus):
    texts = generated_texts("free", 200, 12, MODEL)
    got = rates_of(texts, corpus[1])
    assert got.rates["closed"] == 1 and got.rates["double_mark"] == 0
    assert got.rates["rhymes"] >= 0.7 and got.rates["repeated_verse"] == 0
    assert got.copied <= 0.01


def test_beam_n_10_gives_10_poems_and_another_seed_10_others():
    def beams(seed):
        out = CliRunner().invoke(
            generate_command,
            ["--model", MODEL, "--form", "五律", "--beam", "4", "-n", "10", "--seed", str(seed)],
        )
        assert out.exit_code == 0, out.output
        return out.output.strip().split("\n\n")

    first, second = beams(1), beams(2)
    assert len(set(first)) == len(set(second)) == 10 and not set(first) & set(second)


@pytest.mark.parametrize("max_len", [8, 10, 12])
def test_a_short_max_len_still_gives_a_whole_couplet(max_len):
    """The first verse is kept short enough for its couplet to fit: never a verse cut off."""
    args = ["--model", MODEL, "月", "-n", "5", "--max-len", str(max_len), "--seed", "2"]
    out = CliRunner().invoke(generate_command, [*args, "--format", "json"])
    assert out.exit_code == 0, out.output
    for record in map(json.loads, out.output.splitlines()):
        lines = record["lines"]
        assert len(lines) >= 2 and len({len(line) for line in lines}) == 1, lines
        assert record["text"][-1] in "。？！" and len(record["text"]) <= max_len


def test_a_max_len_too_short_for_a_couplet_is_a_usage_error():
    out = CliRunner().invoke(generate_command, ["--model", MODEL, "月", "--max-len", "7"])
    assert out.exit_code == 2 and "at least --max-len 8" in out.output


def test_max_len_ends_at_a_complete_verse_and_says_so():
    out = CliRunner().invoke(
        generate_command,
        ["--model", MODEL, "-n", "5", "--max-len", "20", "--seed", "3", "--format", "json"],
    )
    assert out.exit_code == 0, out.output
    for record in map(json.loads, out.output.splitlines()):
        assert record["text"][-1] in "。？！" and len(record["text"]) <= 20
        assert record["truncated"] is True  # no couplet pair fits 20 characters with the end
    verbose = CliRunner().invoke(
        generate_command, ["--model", MODEL, "--max-len", "20", "--seed", "3", "-v"]
    )
    assert "truncated at --max-len 20" in verbose.output
    for option in ("--start", "--prime"):
        long = CliRunner().invoke(
            generate_command, ["--model", MODEL, option, "春" * 21, "--max-len", "20"]
        )
        assert long.exit_code == 2 and "longer than --max-len" in long.output


@pytest.mark.parametrize("setting", ["七绝", "七律-no-tones", "beam-五绝"])
def test_keyword_mode_writes_the_command_lines_poems_and_with_keywords_holds_them(setting):
    """decoding-stats --keywords: its poems without keywords are the command line's own (its
    options, its seeds), and every poem with keywords holds them."""
    keywords = keyword_sets(6, 3, 4)
    assert keywords == keyword_sets(6, 3, 4) and all(set(w) <= set(IMAGERY) for w in keywords)
    plain, keyed = with_keywords(setting, keywords, 4, MODEL)
    assert plain.texts == generated_texts(setting, 6, 4, MODEL)
    assert covered(keyed.texts, keywords) == 1 and covered(plain.texts, keywords) < 1
    assert len(keyed.seconds) == len(keyed.scores) == 6 and "ms a poem" in keyed.info()
    assert at_head(["春风吹雨，月照归人。"], [["春", "月", "雨", "山"]]) == 2 / 3


def test_a_free_poems_first_verse_ending_is_not_rhymed_again(corpus):
    """A free poem's first verse has no known length while it is written, so its last
    character is recorded when its mark comes; seed 1 wrote one such 重韵 in 200 before."""
    texts = generated_texts("free", 200, 1, MODEL)
    assert rates_of(texts, corpus[1]).rates["chongyun"] == 0


@pytest.mark.parametrize(
    "args, status, words",
    [
        (["--model", "/nonexistent/model.pt"], 1, "checkpoint /nonexistent/model.pt does not"),
        (["--model", MODEL, "--extra", "--bogus"], 2, "--extra': generate --form 七绝 --bogus"),
        (
            ["--model", MODEL, "--extra", "--best-of 2 --beam 2"],
            2,
            "generate --form 七绝 --best-of 2 --beam 2: choose --beam or --best-of, not both",
        ),
        (["--rerank-with", MODEL], 2, "'--rerank-with': checkpoint"),  # a forward model
        (["--rerank-with", "/nonexistent/back.pt"], 1, "checkpoint /nonexistent/back.pt does"),
    ],
)
def test_decoding_stats_checks_what_it_writes_with_before_the_table(args, status, words):
    from poetry_lm.tools.decoding_stats import main

    result = CliRunner().invoke(main, ["--no-corpus", "--setting", "七绝", "--poems", "1", *args])
    assert result.exit_code == status, result.output
    assert "| poems |" not in result.output  # no table head before the error
    error = [line for line in result.output.splitlines() if "Error" in line]
    assert len(error) == 1 and error[0].count("Error") == 1 and words in error[0], result.output


def test_decoding_stats_names_a_file_that_is_not_text(tmp_path):
    from poetry_lm.tools.decoding_stats import main

    path = tmp_path / "model.pt"
    path.write_bytes(b"PK\x03\x04\x80\x81")
    result = CliRunner().invoke(main, ["--no-corpus", "--file", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.splitlines()[-1] == f"Error: poem file {path} is not UTF-8 text"


def test_decoding_stats_with_a_backward_model_to_write_with_is_a_usage_error(tiny_backward_run):
    from poetry_lm.tools.decoding_stats import main

    args = ["--no-corpus", "--setting", "七绝", "--poems", "1"]
    result = CliRunner().invoke(main, [*args, "--model", str(tiny_backward_run / "best.pt")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    last = result.output.strip().splitlines()[-1]
    assert "Invalid value for '--model'" in last and "give it to --rerank-with" in last
