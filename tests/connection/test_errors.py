"""Every failure reaches the caller as a distq error: peers that are not Redis,
connect timeouts, the retry budget, and the error tree itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis

import distq
from distq import errors
from distq.connection import url as url_module
from distq.connection.server import free_port

#: What an HTTP server says to a Redis client: not the Redis protocol.
GARBAGE = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"


@contextlib.contextmanager
def garbage_server() -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that answers anything with ``GARBAGE``; yields its port.

    Every connection is served by the one thread, each for at most a few
    seconds; the thread ends when the block does.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(0.2)
                deadline = time.monotonic() + 3
                while not stop.is_set() and time.monotonic() < deadline:
                    try:
                        data = conn.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not data:
                        break  # the client hung up
                    with contextlib.suppress(OSError):
                        conn.sendall(GARBAGE)

    thread = threading.Thread(target=serve, name="garbage-server", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()
    assert not thread.is_alive()


def check_translated(exc: BaseException) -> None:
    assert isinstance(exc, distq.ServerError)
    assert not isinstance(exc, redis.RedisError)
    assert isinstance(exc.__cause__, redis.RedisError)  # the cause is kept


@pytest.mark.parametrize("auth", ["", ":secret@"], ids=["no-password", "password"])
def test_a_peer_that_does_not_speak_resp_gives_a_distq_error(namespace: str, auth: str) -> None:
    with garbage_server() as port:
        url = f"redis://{auth}127.0.0.1:{port}/0?connect_timeout=2&socket_timeout=2&retries=1"
        with distq.connect(url, namespace=namespace) as client:
            started = time.monotonic()
            with pytest.raises(distq.DistqError) as caught:
                client.qlen("q")
            assert time.monotonic() - started < 4
            check_translated(caught.value)
            assert "secret" not in str(caught.value)
            with pytest.raises(distq.DistqError) as caught, client.pipeline() as pipe:
                pipe.addjob("q", "x")  # a pipeline too
                pipe.qlen("q")
            check_translated(caught.value)

        async def scenario() -> BaseException:
            async with distq.connect_async(url, namespace=namespace) as aclient:
                try:
                    await aclient.qlen("q")
                except distq.DistqError as exc:
                    return exc
            raise AssertionError("no error from a peer that does not speak RESP")

        started = time.monotonic()
        check_translated(asyncio.run(scenario()))
        assert time.monotonic() - started < 4


@contextlib.contextmanager
def full_listener() -> Iterator[int]:
    """A listener that never accepts and whose accept queue is full, so that
    a new connection attempt hangs until its timeout; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.1)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_a_connect_timeout_names_connect_timeout(namespace: str) -> None:
    with full_listener() as port:
        url = f"redis://127.0.0.1:{port}/0?connect_timeout=0.5&socket_timeout=7"
        with distq.connect(url, namespace=namespace) as client:
            started = time.monotonic()
            with pytest.raises(distq.Timeout) as caught:
                client.qlen("q")
            assert time.monotonic() - started < 3  # not retried
    message = str(caught.value)
    assert "no connection within 0.5 s (connect_timeout)" in message
    assert "socket_timeout" not in message and "7.0 s" not in message
    assert isinstance(caught.value.__cause__, redis.RedisError)


def test_retries_counts_retries_after_the_first_attempt(
    namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there
    url = f"redis://127.0.0.1:{port}/0?retries=2"
    with caplog.at_level(logging.WARNING, logger="distq.connection.client"), distq.connect(
        url, namespace=namespace
    ) as client, pytest.raises(distq.ServerUnavailable) as caught:
        client.qlen("q")
    assert "no connection after 3 attempts" in str(caught.value)
    retries = [r for r in caplog.records if r.name == "distq.connection.client"]
    assert len(retries) == 2
    # …and the documentation says so.
    doc = url_module.__doc__ or ""
    assert "after the first attempt" in doc and "``retries=0`` makes one attempt only" in doc


def test_connection_lost_is_not_part_of_the_error_tree() -> None:
    """Every request is safe to resend, so nothing raises ConnectionLost: it is gone."""
    assert not hasattr(distq, "ConnectionLost")
    assert not hasattr(errors, "ConnectionLost")
    assert "ConnectionLost" not in errors.__all__
    assert "ConnectionLost" not in distq.__all__
    assert "ConnectionLost" not in (errors.__doc__ or "")
    assert [kind.__name__ for kind in distq.ConnectionFailed.__subclasses__()] == [
        "ServerUnavailable"
    ]
