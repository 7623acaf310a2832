"""Keep credentials out of every text the library shows: reprs, logs, errors and CLI output."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``; other text is returned unchanged."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:
        return "<unparseable url>"
    if password is None:
        return url
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact_text(text: str, url: str | None) -> str:
    """``text`` with the password of ``url`` (as written, or percent-decoded) replaced."""
    password = _password(url) if url else None
    if not password:
        return text
    for form in {password, unquote(password)}:
        text = text.replace(form, "***")
    return text
