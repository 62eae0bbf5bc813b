"""Variant characters (劒 for 剑) are counted and never written under the default rules."""

from click.testing import CliRunner

from poetry_lm.cli.write import generate_command
from poetry_lm.model.checkpoint import load_model
from poetry_lm.paths import MODEL_FILE
from poetry_lm.prosody.masks import token_masks
from poetry_lm.prosody.variants import find_variants, variant_table, variants_in


def test_the_table_counts_the_reported_variants_and_no_standard_character():
    table = variant_table()
    assert (table["劒"], table["鴈"], table["燄"]) == ("剑", "雁", "焰")
    assert not {"乾", "惟", "唯", "剑"} & table.keys()


def test_find_variants_keeps_only_one_standard_form():
    unihan = {"劒": ["劍"], "胷": ["匈", "胸"]}
    t2s = {"劍": "剑"}.get
    found = find_variants(["劒", "剑", "胷", "匈", "胸"], unihan, lambda ch: t2s(ch, ch))
    assert found == {"劒": ("剑", "Unihan+t2s")}


def test_masks_exclude_the_variants_with_the_heard_rules_only():
    _, table, _ = load_model(MODEL_FILE)
    counted = variants_in(table.tokens)
    assert len(counted) == len(variant_table()) and {"劒", "鴈", "燄"} <= counted
    ids = [table.index[ch] for ch in sorted(counted)]
    heard, plain = token_masks(table, True, standard=True), token_masks(table, False)
    assert not heard.ordinary[ids].any() and not heard.group_fits[:, ids].any()
    assert plain.ideographs[ids].all() and heard.ideographs[table.index["剑"]]


def test_a_seeded_poem_that_wrote_a_variant_writes_none():
    # under the old rules this run wrote 捧劒绕金钿 in its 海 poem
    out = CliRunner().invoke(generate_command, ["日红山夜湖海月", "--seed", "11"])
    assert out.exit_code == 0 and len(out.output) > 100
    assert not set(out.output) & set(variant_table())
    old = CliRunner().invoke(generate_command, ["日红山夜湖海月", "--seed", "11", "--no-heard"])
    assert old.exit_code == 0 and "劒" in old.output  # the old rules, as --no-heard keeps them
