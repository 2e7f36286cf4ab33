"""Unicode tables frozen from the reference's Rust crates, generated, never edited by hand.

``unicode``: BERT's character classes, by ``scripts/gen_tokenizer_tables.py``; ``grapheme``: the grapheme cluster
categories of unicode-segmentation, by ``scripts/gen_grapheme_tables.py``.
"""
