"""Redis URLs and clients: which URLs name a pool's server, and how the library connects.

Every wait on the server is bounded: ``timeout_s`` caps the connect and each reply, so a server
that accepts connections and then hangs (``DEBUG SLEEP``, a stopped process, a dead link) costs a
caller at most about that long before :class:`~curriculum.errors.BackendUnavailableError`.
Refused or dropped connections are retried a few times with a short jittered backoff (writes are
safe to retry: they carry write ids); timeouts are not retried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from curriculum.errors import BackendUnavailableError, ConfigError
from curriculum.redaction import redact_text, redact_url

REDIS_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SSL_CERT_REQS = ("none", "optional", "required")
DEFAULT_TIMEOUT_S = 10.0
CONNECT_RETRIES = 3

ClientFactory = Callable[[str], "redis.Redis"]
_CLIENT_FACTORIES: dict[str, ClientFactory] = {}


def _invalid_url(url: str, exc: ValueError) -> ConfigError:
    """The error for a URL the parser refused. A URL whose password holds an unencoded '/', '?'
    or '#' does not parse, and the parser's message quotes pieces of it: only the redacted URL
    and a hint are shown then."""
    shown = redact_url(url)
    detail = redact_text(str(exc), url)
    if shown.partition("://")[2].startswith("***@"):
        detail = "percent-encode the '/', '?', '#' or '@' in its password (urllib.parse.quote)"
    return ConfigError(f"backend_url {shown!r} is invalid: {detail}")


def register_client_factory(scheme: str, factory: ClientFactory) -> None:
    """Build clients for URLs of ``scheme`` with ``factory(url)`` (e.g. a test double)."""
    _CLIENT_FACTORIES[scheme] = factory


def check_url(url: str) -> str:
    """The URL's scheme, after refusing what redis-py would accept wrongly or reject late.

    Raises:
        ConfigError: not a Redis URL, no host (``redis://`` alone would silently mean
            localhost), no socket path for ``unix://``, or a bad option.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise _invalid_url(url, exc) from None
    scheme = parts.scheme
    if scheme in _CLIENT_FACTORIES:
        return scheme
    if scheme not in REDIS_SCHEMES and scheme not in CLUSTER_SCHEMES:
        raise ConfigError(
            f"backend_url {redact_url(url)!r} is not a redis://, rediss://, unix://, "
            "redis+cluster:// or rediss+cluster:// URL"
        )
    if scheme == "unix" and not parts.path:
        raise ConfigError(
            f"backend_url {redact_url(url)!r} names no socket: write unix:///path/to/redis.sock"
        )
    if scheme != "unix" and not parts.hostname:
        raise ConfigError(
            f"backend_url {redact_url(url)!r} names no host; write the server explicitly, "
            f"e.g. {scheme}://127.0.0.1:6379/0 for a Redis on this machine"
        )
    for key, value in parse_qsl(parts.query):
        if key == "ssl_cert_reqs" and value.lower() not in SSL_CERT_REQS:
            raise ConfigError(
                f"backend_url {redact_url(url)!r}: ssl_cert_reqs={value!r} is not one of "
                f"{', '.join(SSL_CERT_REQS)}"
            )
    return scheme


def connect(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> redis.Redis:
    """A client for ``url`` whose connects and replies wait at most ``timeout_s`` each.

    ``redis+cluster://host:port`` (or ``rediss+cluster://``) connects to a Redis Cluster through
    any of its nodes; the client follows MOVED and ASK redirections.

    Raises:
        ConfigError: the URL is not usable (see :func:`check_url`).
        BackendUnavailableError: a cluster's nodes cannot be reached (a cluster client reads
            the cluster's layout at once; other clients connect at their first command).
    """
    scheme = check_url(url)
    if scheme in _CLIENT_FACTORIES:
        return _CLIENT_FACTORIES[scheme](url)
    options: dict[str, Any] = {
        "decode_responses": False,
        "retry": Retry(
            ExponentialWithJitterBackoff(cap=min(0.25, timeout_s), base=0.01),
            retries=CONNECT_RETRIES,
            supported_errors=(redis.ConnectionError,),
        ),
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
    }
    try:
        if scheme in CLUSTER_SCHEMES:
            plain = CLUSTER_SCHEMES[scheme] + url[len(scheme) :]
            return RedisCluster.from_url(plain, **options)  # type: ignore[return-value]
        return redis.Redis.from_url(url, health_check_interval=30, **options)
    except ValueError as exc:
        raise _invalid_url(url, exc) from None
    except redis.RedisError as exc:
        raise unavailable(exc, url, "Redis Cluster") from None


def summarise(exc: BaseException, url: str) -> str:
    """``Type: message`` of a client error, on one line, with the URL's password masked."""
    text = " ".join(redact_text(str(exc), url).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def unavailable(exc: BaseException, url: str, what: str = "Redis") -> BackendUnavailableError:
    """The library's error for an unreachable server: cause summarised, the original on
    ``.cause`` (raise it ``from None``: the message says everything a user needs)."""
    hint = "is it running, reachable from this host, and named by the URL's host and port?"
    error = BackendUnavailableError(
        f"{what} at {redact_url(url)} is unavailable: {summarise(exc, url)}; {hint}"
    )
    error.cause = exc  # type: ignore[attr-defined]
    return error
