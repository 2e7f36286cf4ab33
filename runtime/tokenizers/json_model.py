"""What the tokenizer.json tokenizers (Unigram, BPE) share: the pad token, the templates, the special ids.

Both resolve their ids as transformers does for the same directory (added tokens over the model's vocabulary) and
add the post-processor's template around each text; only the model and its pre-tokenizer differ.
"""

from __future__ import annotations

from typing import Any

from embedrt.tokenizers.added_vocabulary import AddedVocabulary
from embedrt.tokenizers.base import BatchEncoder, TokenizerError
from embedrt.tokenizers.processors import Template


class TokenizerJsonModel(BatchEncoder):
    """The part of :class:`UnigramTokenizer` and :class:`BPETokenizer` that does not depend on the model.

    Subclasses set ``source``, ``_model`` (with ``ids``: token -> id), ``_added``, ``_template``, ``_prefix_ids``,
    ``_suffix_ids`` and ``_pad_id`` (from :meth:`_resolve_pad`), and define ``unk_id``.
    """

    source: str
    _model: Any
    _added: AddedVocabulary
    _template: Template
    _prefix_ids: tuple[int, ...]
    _suffix_ids: tuple[int, ...]
    _pad_id: int

    @property
    def unk_id(self) -> int:
        """Id the model gives text it has no token for (-1 if it has none)."""
        raise NotImplementedError

    def _resolve_pad(self, pad_token: str | None, unk_token: str | None) -> int:
        """convert_tokens_to_ids(pad_token): added tokens first, then the model; unknown -> the unk token's id."""
        if pad_token is None:
            raise TokenizerError(
                f"{self.source}: no pad token (tokenizer_config.json, special_tokens_map.json, padding)"
            )
        found = self._token_id(pad_token)
        if found is None and unk_token is not None:
            found = self._token_id(unk_token)
        if found is None:
            raise TokenizerError(f"{self.source}: pad token {pad_token!r} is not in the vocabulary")
        return found

    def _token_id(self, token: str) -> int | None:
        found = self._added.ids.get(token)
        return self._model.ids.get(token) if found is None else found

    @property
    def pad_id(self) -> int:
        """Id used to pad rows to the longest one (XLM-R's and RoBERTa's ``<pad>`` is 1)."""
        return self._pad_id

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids of the special tokens: the template's, pad, unk and the added tokens marked special."""
        ids = {*self._prefix_ids, *self._suffix_ids, self.pad_id}
        ids.update(i for i, t in self._added.tokens.items() if t.special)
        if self.unk_id >= 0:
            ids.add(self.unk_id)
        return frozenset(ids)

    @property
    def template(self) -> Template:
        """The post-processor's templates (single texts and pairs), as tokenizer.json gives them."""
        return self._template

    @property
    def pair_template(self) -> tuple[str | tuple[int, ...], ...]:
        """The post-processor's template for a pair of texts ("A", "B" and special ids): ``template.pair``."""
        return self._template.pair
