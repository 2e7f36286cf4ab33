"""Pre-tokenizers, one module each: BERT's (``bert``) and SentencePiece's ``Metaspace`` (``metaspace``)."""
