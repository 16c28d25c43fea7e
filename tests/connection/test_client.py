"""The connection layer on real servers: resends, reconnects, wire logging."""

from __future__ import annotations

import logging

import pytest
import redis

import distq
from distq.connection.url import ConnectionSettings
from distq.queue import ops
from distq.queue.ops import QueueContext


def test_a_resent_addjob_adds_the_job_once(url: str, namespace: str) -> None:
    """The reconnect restart resends a whole step: it must be harmless."""
    with distq.connect(url, namespace=namespace) as client:
        op = ops.addjobs(QueueContext(namespace=namespace), "resend", ["a", "b"])
        step = next(op)
        conn = client._conn
        conn.roundtrip(step)
        conn.roundtrip(step)  # the reply was "lost": send it again
        assert client.qlen("resend") == 2


def test_client_survives_its_connections_being_killed(url: str, namespace: str) -> None:
    settings = ConnectionSettings.from_url(url)
    admin = redis.Redis(host=settings.host, port=settings.port, password=settings.password)
    try:
        with distq.connect(url, namespace=namespace) as client:
            client.addjob("killed", "a")
            killed = admin.client_kill_filter(_type="normal", skipme=True)
            assert killed >= 1
            assert client.qlen("killed") == 1  # reconnected and resent
            assert client.addjob("killed", "b")
            assert client.qlen("killed") == 2
    finally:
        admin.close()


def test_wire_logger_shows_commands_but_never_the_password(
    url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    password = ConnectionSettings.from_url(url).password
    assert password
    with caplog.at_level(logging.DEBUG, logger="distq.wire"), distq.connect(
        url, namespace=namespace
    ) as client:
        client.addjob("wired", "hello-body")
        client.getjob("wired", nohang=True)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "distq.wire")
    assert "EVALSHA" in text and "hello-body" in text
    assert password not in text
    caplog.clear()
    with distq.connect(url, namespace=namespace) as client:
        client.qlen("wired")
    assert not [r for r in caplog.records if r.name == "distq.wire"]  # off unless asked


def test_scripts_reload_after_the_script_cache_is_flushed(url: str, namespace: str) -> None:
    settings = ConnectionSettings.from_url(url)
    admin = redis.Redis(host=settings.host, port=settings.port, password=settings.password)
    try:
        with distq.connect(url, namespace=namespace) as client:
            client.addjob("flushed", "a")
            admin.script_flush()
            assert client.qlen("flushed") == 1  # NOSCRIPT → EVAL
            with client.pipeline() as pipe:  # and inside a pipeline too
                admin.script_flush()
                pipe.addjob("flushed", "b")
                pipe.qlen("flushed")
            assert pipe.results[1] == 2
    finally:
        admin.close()


def test_permission_denied_is_typed(url: str, namespace: str) -> None:
    settings = ConnectionSettings.from_url(url)
    admin = redis.Redis(host=settings.host, port=settings.port, password=settings.password)
    user = f"{namespace}-ro"
    try:
        admin.acl_setuser(user, enabled=True, passwords=["+ropw"], commands=["+@read", "+ping"],
                          keys=["*"])
        ro = settings.replace(username=user, password="ropw").to_url()
        with distq.connect(ro, namespace=namespace) as client, pytest.raises(
            distq.PermissionDenied
        ):
            client.addjob("acl", "x")
        wrong = settings.replace(username=user, password="nope").to_url()
        with distq.connect(wrong, namespace=namespace) as client, pytest.raises(
            distq.AuthenticationError
        ):
            client.qlen("acl")
    finally:
        admin.acl_deluser(user)
        admin.close()


def test_pipeline_runs_in_order_when_its_scripts_are_new_to_the_server(
    url: str, namespace: str
) -> None:
    settings = ConnectionSettings.from_url(url)
    admin = redis.Redis(host=settings.host, port=settings.port, password=settings.password)
    try:
        admin.script_flush()
        with distq.connect(url, namespace=namespace) as other:
            other.qlen("ordered")  # the server now knows one of the scripts
        with distq.connect(url, namespace=namespace) as client:
            with client.pipeline() as pipe:
                pipe.addjob("ordered", "a")
                pipe.qlen("ordered")
                pipe.addjob("ordered", "b")
                pipe.qlen("ordered")
            assert pipe.results[1] == 1 and pipe.results[3] == 2
    finally:
        admin.close()
