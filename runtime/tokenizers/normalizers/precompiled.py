"""SentencePiece's precompiled charsmap: tokenizers' ``Precompiled`` normalizer."""

from __future__ import annotations

import struct

from embedrt.tokenizers import graphemes as _gr
from embedrt.tokenizers.base import TokenizerError
from embedrt.tokenizers.charsets import LazyTable
from embedrt.tokenizers.normalizers.alignments import Origins, replace_changes, transform

__all__ = ["Precompiled"]

# Bound of the per-grapheme charsmap cache (entries; the per-character table is bounded by LazyTable).
_CHARSMAP_CACHE_CAP = 65_536


class Precompiled:
    """SentencePiece's precompiled charsmap as tokenizers' ``Precompiled`` normalizer applies it.

    The charsmap is a little-endian u32 trie size in bytes, the trie (darts-clone double-array units), then
    NUL-terminated replacement strings that trie values point into. ``transform`` takes the FIRST (shortest)
    match of a common-prefix search and replaces the whole chunk with it, even where the match is shorter than the
    chunk. Calling the normalizer works grapheme by grapheme: a cluster of fewer than 6 UTF-8 bytes is looked up
    whole, anything else (and a whole cluster without a match) character by character. Most text has no cluster of
    two characters or more, and is one ``str.translate`` over a lazily filled table.
    """

    def __init__(self, charsmap: bytes, source: str) -> None:
        if len(charsmap) < 4:
            raise TokenizerError(f"{source}: precompiled_charsmap is too short ({len(charsmap)} bytes)")
        (trie_size,) = struct.unpack_from("<I", charsmap)
        if 4 + trie_size // 4 * 4 > len(charsmap):
            raise TokenizerError(f"{source}: precompiled_charsmap trie of {trie_size} bytes is cut short")
        self._units = list(struct.unpack_from(f"<{trie_size // 4}I", charsmap, 4))
        self._blob = charsmap[4 + trie_size // 4 * 4 :]
        try:
            self._blob.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TokenizerError(f"{source}: precompiled_charsmap replacements are not UTF-8: {exc}") from None
        if not self._units:
            raise TokenizerError(f"{source}: precompiled_charsmap has an empty trie")
        self._single = LazyTable(lambda cp: self._single_char(chr(cp)))
        self._chunks: dict[str, str | None] = {}
        # Precomputed so that ASCII text is one str.translate call that never calls back into Python.
        self._ascii = {cp: self._single[cp] for cp in range(128)}

    def transform(self, chunk: str) -> str | None:
        """The replacement of the shortest charsmap key that starts ``chunk``, or None."""
        units = self._units
        size = len(units)
        unit = units[0]
        pos = (unit >> 10) << ((unit & 0x200) >> 6)
        for byte in chunk.encode("utf-8"):
            if byte == 0:  # the search stops at NUL
                return None
            pos ^= byte
            if pos >= size:
                return None
            unit = units[pos]
            if unit & 0x800000FF != byte:
                return None
            pos ^= (unit >> 10) << ((unit & 0x200) >> 6)
            if (unit >> 8) & 1:
                if pos >= size:
                    return None
                start = units[pos] & 0x7FFFFFFF
                end = self._blob.find(b"\0", start)
                return self._blob[start : len(self._blob) if end < 0 else end].decode("utf-8")
        return None

    def _single_char(self, char: str) -> str:
        replacement = self.transform(char)
        return char if replacement is None else replacement

    def _cluster(self, cluster: str) -> str:
        """A cluster of two or more characters: whole if under 6 bytes and the charsmap has it, else per char."""
        if len(cluster) < 6 and len(cluster.encode("utf-8")) < 6:
            if cluster in self._chunks:
                replacement = self._chunks[cluster]
            else:
                replacement = self.transform(cluster)
                if len(self._chunks) < _CHARSMAP_CACHE_CAP:
                    self._chunks[cluster] = replacement
            if replacement is not None:
                return replacement
        return cluster.translate(self._single)

    def track(self, text: str, origins: Origins) -> tuple[str, Origins]:
        """The reference's transformations, cluster by cluster, applied to the alignments."""
        parts: list[str] = []
        changes: list[int] = []
        for cluster in _gr.graphemes(text):
            if len(cluster.encode("utf-8")) < 6:
                replacement = self.transform(cluster)
                if replacement is not None:
                    parts.append(replacement)
                    replace_changes(changes, len(cluster), len(replacement))
                    continue
            for char in cluster:
                replacement = self.transform(char)
                if replacement is None:
                    parts.append(char)
                    changes.append(0)
                else:
                    parts.append(replacement)
                    replace_changes(changes, 1, len(replacement))
        return "".join(parts), transform(origins, changes)

    def __call__(self, text: str) -> str:
        """The text with the charsmap applied, grapheme by grapheme."""
        if text.isascii():
            if "\r\n" not in text:
                return text.translate(self._ascii)
            spans = _gr.multi_char_spans(text)
        else:
            spans = _gr.multi_char_spans(text)
            if not spans:
                return text.translate(self._single)
        parts: list[str] = []
        done = 0
        for start, stop in spans:
            parts.append(text[done:start].translate(self._single))
            parts.append(self._cluster(text[start:stop]))
            done = stop
        parts.append(text[done:].translate(self._single))
        return "".join(parts)
