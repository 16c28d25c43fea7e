"""Server addresses: ``redis://``, ``rediss://`` and ``unix://`` URLs.

Accepted forms::

    redis://[[user]:password@]host[:port][/db][?option=value…]
    rediss://…                       the same over TLS (certificates verified)
    unix:///path/to/socket[?db=N&password=…]

Options in the query string: ``db``, ``password``, ``username``,
``connect_timeout`` and ``socket_timeout`` (seconds), ``retries`` (how many
times a broken connection is retried after the first attempt before giving
up: ``retries=0`` makes one attempt only), ``ssl_ca_certs``, ``ssl_certfile``,
``ssl_keyfile``, ``ssl_cert_reqs`` (``required``, ``optional`` or ``none``).
An unknown option is an error: a misspelt setting never vanishes silently.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from distq.errors import InvalidArgument

__all__ = ["ConnectionSettings"]

_SCHEMES = ("redis", "rediss", "unix")
_FLOAT_OPTIONS = {"connect_timeout": "connect_timeout_s", "socket_timeout": "socket_timeout_s"}
_INT_OPTIONS = {"db": "db", "retries": "retries"}
_STR_OPTIONS = {
    "password": "password",
    "username": "username",
    "ssl_ca_certs": "ssl_ca_certs",
    "ssl_certfile": "ssl_certfile",
    "ssl_keyfile": "ssl_keyfile",
    "ssl_cert_reqs": "ssl_cert_reqs",
}


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Where the server is and how to talk to it.

    Build one with :meth:`from_url`; every field has a sensible default.
    """

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str = "required"
    #: Seconds to wait for a TCP/unix connection to open.
    connect_timeout_s: float = 5.0
    #: Seconds to wait for any reply; blocking waits are sliced below this.
    socket_timeout_s: float = 30.0
    #: Retries after the first connection attempt (with exponential backoff)
    #: before ServerUnavailable: ``retries + 1`` attempts in all.
    retries: int = 5

    @classmethod
    def from_url(cls, url: str) -> ConnectionSettings:
        """Parse a ``redis://``, ``rediss://`` or ``unix://`` URL.

        Raises:
            InvalidArgument: the URL or one of its options is malformed.
        """
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise InvalidArgument(
                f"unsupported URL scheme {parts.scheme!r}: use redis://, rediss:// or unix://"
            )
        fields: dict[str, Any] = {"tls": parts.scheme == "rediss"}
        if parts.username:
            fields["username"] = unquote(parts.username)
        if parts.password is not None:
            fields["password"] = unquote(parts.password)
        if parts.scheme == "unix":
            if not parts.path:
                raise InvalidArgument("a unix:// URL needs a socket path: unix:///path/to.sock")
            fields["path"] = unquote(parts.path)
        else:
            fields.update(_host_port_db(parts.hostname, parts, url))
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            fields.update(_option(key, value))
        return cls(**fields)

    def redacted(self) -> str:
        """This address as a URL with the password replaced by ``***``."""
        return self.to_url(redact=True)

    def to_url(self, *, redact: bool = False) -> str:
        """This address as a URL (the password in clear unless ``redact``)."""
        auth = ""
        if self.username or self.password:
            secret = "***" if redact else quote(self.password or "", safe="")
            auth = f"{quote(self.username or '', safe='')}:{secret}@"
        if self.path is not None:
            query = f"?db={self.db}" if self.db else ""
            return f"unix://{auth}{self.path}{query}"
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"

    def replace(self, **changes: Any) -> ConnectionSettings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _host_port_db(hostname: str | None, parts: Any, url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if hostname:
        out["host"] = hostname
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidArgument(f"bad port in URL {_redact_raw(url)}") from exc
    if port is not None:
        out["port"] = port
    db = parts.path.lstrip("/")
    if db:
        if not db.isdigit():
            raise InvalidArgument(f"the database in the URL path must be a number, not {db!r}")
        out["db"] = int(db)
    return out


def _option(key: str, value: str) -> dict[str, Any]:
    try:
        if key in _FLOAT_OPTIONS:
            return {_FLOAT_OPTIONS[key]: float(value)}
        if key in _INT_OPTIONS:
            return {_INT_OPTIONS[key]: int(value)}
    except ValueError as exc:
        raise InvalidArgument(f"URL option {key}={value!r} is not a number") from exc
    if key in _STR_OPTIONS:
        if key == "ssl_cert_reqs" and value not in ("required", "optional", "none"):
            raise InvalidArgument("ssl_cert_reqs must be required, optional or none")
        return {_STR_OPTIONS[key]: value}
    raise InvalidArgument(f"unknown URL option {key!r}")


def _redact_raw(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
