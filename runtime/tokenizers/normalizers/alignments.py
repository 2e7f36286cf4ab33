"""Character alignments through normalization, as tokenizers' ``NormalizedString`` moves them.

Each step maps str -> str. ``track`` also maps ``origins`` (per character: the index of the original character
its alignment starts at) the way NormalizedString moves alignments. Only Metaspace's prepend_scheme "first"
needs that (it asks whether a segment still starts at original offset 0), so it is a separate, slower path.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Origins", "replace_changes", "transform"]

Origins = list[int]


def transform(origins: Origins, changes: Sequence[int], skip: int = 0) -> Origins:
    """NormalizedString::transform_range on character alignments.

    A change of 0 replaces the next input character (and takes its alignment), a negative one also swallows that
    many more, a positive one inserts (with the previous input character's alignment, or 0 at the start).
    """
    out: Origins = []
    at = skip
    for change in changes:
        if change > 0:
            out.append(origins[at - 1] if at >= 1 else 0)
        else:
            out.append(origins[at] if at < len(origins) else (origins[-1] if origins else 0))
            at += 1 - change
    return out


def replace_changes(changes: list[int], old_count: int, new_count: int) -> None:
    """The Precompiled normalizer's ``replace`` on a list of changes.

    New characters are 0; extra ones are insertions; missing ones are swallowed by the last transformation
    recorded so far (none at the very start: a quirk kept as is).
    """
    changes.extend([0] * new_count)
    diff = new_count - old_count
    if diff > 0:
        for i in range(len(changes) - diff, len(changes)):
            changes[i] = 1
    elif diff < 0 and changes:
        changes[-1] += diff
