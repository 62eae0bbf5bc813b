"""Prosody: the 平水韵 table, forms, rhyme and 平仄 rules applied while a poem is written."""
