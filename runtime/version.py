"""The installed embedrt's version, as manifests, corpus jobs and the server's /info record it."""

from __future__ import annotations


def embedrt_version() -> str:
    """The version of the installed embedrt distribution ("unknown" when it runs from a bare source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("embedrt")
    except PackageNotFoundError:
        return "unknown"
