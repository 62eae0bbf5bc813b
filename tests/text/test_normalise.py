"""The one rule for the text a user gives (poetry_lm.text.normalise)."""

import pytest

from poetry_lm.text.normalise import (
    MAX_TEXT_CHARS,
    PoemTextError,
    check_poem_text,
    normalise,
    read_poem,
    read_title,
    simplify_unknown,
)


def test_bom_whitespace_and_half_width_marks():
    assert normalise("\ufeff床前 明月光,疑是地上霜.\n") == "床前明月光，疑是地上霜。"
    assert normalise("何处?归去!且住;听:") == "何处？归去！且住；听："


def test_only_unknown_characters_are_simplified():
    known = {"乾", "坤"}
    assert simplify_unknown("乾坤國", known) == "乾坤国"
    assert simplify_unknown("乾") == "干"  # with no vocabulary, everything is converted


@pytest.mark.parametrize(
    "text, words",
    [("abc", "'a'"), ("，春风", "begins with '，'"), ("月" * (MAX_TEXT_CHARS + 1), "at most")],
)
def test_what_is_not_poem_text_is_refused(text, words):
    with pytest.raises(PoemTextError, match=words):
        read_poem(text)


def test_a_message_quotes_the_text_as_it_was_typed():
    # "，。" is read as "。", and a message quoting that named a mark the user never typed first
    with pytest.raises(PoemTextError, match="the poem '，。' begins with '，'"):
        read_poem("，。")
    with pytest.raises(PoemTextError, match="the poem '<img src=x onerror=a' holds '<'"):
        read_poem("<img src=x onerror=alert(1)>")


def test_an_empty_text_passes_the_check():
    assert check_poem_text("") == ""


def test_a_title_is_read_by_the_rule_and_kept_as_the_corpus_keeps_titles():
    assert read_title(" 春望, 其一 ") == "春望其一"  # its characters only, as clean_title
    assert read_title("國破", known={"破"}) == "国破"  # only what the model lacks is converted
    assert read_title("") == ""
    assert read_title("春" * 24 + "。") == "春" * 24  # marks do not count
    assert (
        read_title("《春望》（其二）3") == "春望其二"
    )  # brackets and digits dropped, as in the corpus
    for text, words in [("spring", "holds no Chinese character"), ("春" * 25, "at most 24")]:
        with pytest.raises(PoemTextError, match=words):
            read_title(text)
