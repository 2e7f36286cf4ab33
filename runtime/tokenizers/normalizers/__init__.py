"""Normalizers, one module each.

BERT's (``bert``), SentencePiece's charsmap (``precompiled``), the small steps (``simple``: Strip, Replace,
Lowercase), the chain a tokenizer.json declares (``sequence``) and the alignments they track (``alignments``).
"""
