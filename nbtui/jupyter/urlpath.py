"""The one way an outside string becomes part of a URL path: one checked segment.

A kernel id, a terminal name, a session's notebook path, a hub user's or server's name: each
comes from a server (or a hub) and is hostile. Put into a path as it is, ``../`` climbs out of
the server's prefix: httpx resolves dot segments against the base URL, so a hub user's server
listing the kernel id ``../../../../hub/api/users/bob/server`` once got root's ``kill`` to send
``DELETE /hub/api/users/bob/server`` with the hub's token.

So every such string goes through ``segment`` (one segment, percent-encoded with no safe
characters) or ``contents_path`` (a notebook path: split at ``/``, each part a segment).
What cannot be one segment is refused here with one line naming why; nothing is ever
resolved against a server's base URL.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote, unquote

from nbtui.core.errors import NbtuiError
from nbtui.core.text import one_line


class UnsafeSegment(NbtuiError):
    """An outside string that cannot be one URL path segment: no request is built from it (exit 1)."""


def why_not_segment(value: object, *, named_by_hub: bool = False) -> str | None:
    """Why ``value`` cannot be one URL path segment, or None when it can.

    ``named_by_hub``: a user's or server's name that the hub itself gave, sent back to that
    hub's API: JupyterHub matches ``[^/]+`` on the encoded path and decodes it, so a ``/``, a
    control character or a lone surrogate (JSON's ``"\\ud800"``), percent-encoded as the hub's
    own URLs have them, is part of the one name there and is let through."""
    if not isinstance(value, str):
        return "it is not text"
    if value == "":
        return "it is empty"
    if value in (".", ".."):
        return f"'{value}' names a folder, not a segment"
    if not named_by_hub and ("/" in value or "\\" in value):
        return "it contains a path separator"
    for ch in value:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cs") and not named_by_hub:
            return "it contains control characters"
    return None


def segment(value: str, what: str, *, named_by_hub: bool = False) -> str:
    """``value`` as one percent-encoded URL path segment, or UnsafeSegment naming ``what``."""
    why = why_not_segment(value, named_by_hub=named_by_hub)
    if why is not None:
        raise UnsafeSegment(f"{what} '{one_line(value, 80)}' cannot be one URL path segment ({why}): "
                            f"nbtui sends no request for it")
    return quote(value, safe="", errors="surrogatepass")  # a lone surrogate only where named_by_hub


def contents_path(path: str, what: str = "notebook path") -> str:
    """A server-relative contents path (``work/a b.ipynb``) as URL path segments, each checked:
    no leading ``/``, no empty, ``.`` or ``..`` part."""
    if not isinstance(path, str) or path.startswith("/"):
        raise UnsafeSegment(f"{what} '{one_line(path, 80)}' is not relative to the server's root: "
                            f"nbtui sends no request for it")
    return "/".join(segment(part, what) for part in path.split("/"))


def server_path(path: str, what: str) -> str:
    """A URL path a hub gave (``/user/alice/``): absolute, every part a segment (so no dot
    part can climb out of it), with the ``/`` at both ends kept."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise UnsafeSegment(f"{what} '{one_line(path, 80)}' is not an absolute URL path")
    inner = path.strip("/")
    if not inner:
        return "/"
    for part in inner.split("/"):
        why = why_not_segment(part) or (
            "it is a dot segment, encoded" if unquote(part) in (".", "..") else None)
        if why is not None:
            raise UnsafeSegment(f"{what} '{one_line(path, 80)}' has a part that cannot be one segment ({why})")
    return path if path.endswith("/") else path + "/"
