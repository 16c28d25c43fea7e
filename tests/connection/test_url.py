"""URLs → ConnectionSettings."""

from __future__ import annotations

import pytest

from distq import ConnectionSettings, InvalidArgument


def test_redis_url_with_user_password_and_db() -> None:
    s = ConnectionSettings.from_url("redis://ada:s%40cret@db.example:6380/3")
    assert (s.host, s.port, s.db, s.username, s.password, s.tls) == (
        "db.example", 6380, 3, "ada", "s@cret", False,
    )
    assert s.redacted() == "redis://ada:***@db.example:6380/3"
    assert "s@cret" not in repr(s.redacted())


def test_password_only_and_defaults() -> None:
    s = ConnectionSettings.from_url("redis://:pw@localhost")
    assert (s.host, s.port, s.db, s.username, s.password) == ("localhost", 6379, 0, None, "pw")


def test_rediss_and_tls_options() -> None:
    s = ConnectionSettings.from_url("rediss://h:1/0?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required")
    assert s.tls and s.ssl_ca_certs == "/ca.pem"
    assert s.to_url().startswith("rediss://")


def test_unix_socket_with_query_options() -> None:
    s = ConnectionSettings.from_url(
        "unix:///run/x/server.sock?db=2&password=p%2Fw&connect_timeout=1.5&retries=2"
    )
    assert (s.path, s.db, s.password, s.connect_timeout_s, s.retries) == (
        "/run/x/server.sock", 2, "p/w", 1.5, 2,
    )
    assert s.redacted() == "unix://:***@/run/x/server.sock?db=2"
    assert ConnectionSettings.from_url(s.to_url()) == s.replace(connect_timeout_s=5.0, retries=5)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost",
        "redis://localhost/abc",
        "redis://localhost:notaport",
        "redis://localhost?colour=blue",
        "redis://localhost?socket_timeout=soon",
        "rediss://h?ssl_cert_reqs=maybe",
        "unix://",
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidArgument):
        ConnectionSettings.from_url(url)
