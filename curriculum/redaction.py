"""Keep credentials out of every text the library shows: reprs, logs, errors and CLI output.

A URL's password can sit in its user info (``redis://user:secret@host``) or in its query
(``redis://host/0?password=secret``, which redis-py reads too); both are masked.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def _passwords(url: str) -> set[str]:
    found = set()
    try:
        parts = urlsplit(url)
        if parts.password:
            found.add(parts.password)
        found.update(v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v)
    except ValueError:
        pass
    return found


def redact_url(url: str) -> str:
    """``url`` with its passwords replaced by ``***``; other text is returned unchanged.

    Works on the raw text, so a URL that does not parse (a bad port, a broken IPv6 host) is
    masked too.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = len(rest)
    for stop in "/?#":
        position = rest.find(stop)
        if position != -1:
            end = min(end, position)
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    elif not at and ":" in rest[: max(rest.rfind("@"), 0)]:
        # a password holding an unencoded '/', '?' or '#' (the URL does not parse): mask the
        # whole user info, up to the last '@'
        netloc, tail = "***@" + rest[rest.rfind("@") + 1 :], ""
    return _QUERY_PASSWORD.sub(r"\1***", f"{scheme}://{netloc}{tail}")


def redact_text(text: str, url: str | None) -> str:
    """``text`` with the passwords of ``url`` (as written, or percent-decoded) replaced."""
    for password in _passwords(url) if url else ():
        for form in {password, unquote(password)}:
            text = text.replace(form, "***")
    if url and redact_url(url) != url:  # also the URL as written, where it does not parse
        text = text.replace(url, redact_url(url))
    return text
