"""Cached services against real servers and real ``distq worker`` / ``distq serve``
processes (the services are in ``services_app.py``, next to this file).

Every computation is counted in a ledger on the server; every process a test
starts is stopped by PID (SIGTERM, then SIGKILL past a bound) and checked to
leave no child behind. DisTcl-protocol requests carry the test's namespace as
their first argument: DisTcl's keys are global, and each test needs its own.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import multiprocessing
import os
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis

from distq.connection.ops import Command, single
from distq.endpoints.app import App
from distq.endpoints.service import request_digest
from distq.errors import InvalidArgument, RemoteError
from distq.queue.keys import ServiceKeys
from processes import AppProcesses, Process, kill_quietly, wait_for

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
services_app: ModuleType = importlib.import_module("services_app")
# The fixtures app, procs and raw, shared with the other tests of services_app.
fixtures: ModuleType = importlib.import_module("services_fixtures")
app, procs, raw = fixtures.app, fixtures.procs, fixtures.raw


def runs(name: str, *args: Any) -> list[int]:
    """The PIDs that computed ``name`` for exactly these arguments."""
    return [pid for pid, _, a in services_app.ledger_entries(name) if a == list(args)]


def native_keys(app: App, service: str, *args: Any) -> ServiceKeys:
    return ServiceKeys(app.context.namespace, service, request_digest(args, {}))


def pttl(app: App, key: str) -> int:
    value: int = app.client.run(single(Command(("PTTL", key))))
    return value


# Many client processes -------------------------------------------------------------------


def _client_main(service: str, args: tuple[Any, ...], go: Any, results: Any) -> None:
    """A forked client process: wait for the start signal, then ``get``."""
    the_app: App = services_app.app
    the_app.forget_connections()  # the parent's connections are not this process's
    try:
        if not go.wait(20):
            raise TimeoutError("no start signal")
        results.put((os.getpid(), True, the_app.get(service, *args, timeout=20)))
    except BaseException as exc:
        results.put((os.getpid(), False, repr(exc)))


def get_from_processes(count: int, service: str, *args: Any) -> list[tuple[int, bool, Any]]:
    """``count`` forked processes all ``get`` the same key at once: (pid, ok, value) each."""
    context = multiprocessing.get_context("fork")
    go, results = context.Event(), context.Queue()
    clients: list[Any] = []
    try:
        for _ in range(count):
            client = context.Process(target=_client_main, args=(service, args, go, results))
            client.start()
            clients.append(client)
        go.set()
        outcomes = [results.get(timeout=40) for _ in range(count)]
        for client in clients:
            client.join(10)
            assert client.exitcode == 0, f"client {client.pid} exited with {client.exitcode}"
        return outcomes
    finally:
        for client in clients:
            if client.is_alive():
                kill_quietly(client.pid)
            client.join(5)
        results.close()


def test_fifty_client_processes_one_computation(
    app: App, procs: AppProcesses, namespace: str
) -> None:
    worker = procs.start("worker", "-c", "2", live=3)  # 2 + its DisTcl server process

    outcomes = get_from_processes(50, "shared", "k")
    assert [ok for _, ok, _ in outcomes] == [True] * 50, outcomes
    assert {value for _, _, value in outcomes} == {"shared k"}
    assert len({pid for pid, _, _ in outcomes}) == 50  # 50 distinct client processes
    [computed_by] = runs("shared", "k")  # computed exactly once
    assert computed_by in worker.children()

    # The same over the DisTcl protocol, on the worker's one DisTcl server process.
    outcomes = get_from_processes(50, "dq_slow", namespace, "k", "0.5", "60")
    assert [ok for _, ok, _ in outcomes] == [True] * 50, outcomes
    assert {value for _, _, value in outcomes} == {"k run 1"}
    assert len(runs("dq_slow", namespace, "k", "0.5", "60")) == 1


# Semantics -------------------------------------------------------------------------------


def test_errors_forget_and_expiry(app: App, procs: AppProcesses, namespace: str) -> None:
    procs.start("worker", "-c", "2", live=3)  # native services, and one DisTcl server process
    check_native_semantics(app)
    check_distcl_semantics(app, namespace)


def check_native_semantics(app: App) -> None:
    # An error is carried to the caller, and not cached: the next get computes again.
    with pytest.raises(RemoteError) as raised:
        app.get("failing", "x")
    assert (raised.value.type_name, raised.value.message) == ("ValueError", "bad x")
    assert "Traceback" in raised.value.traceback
    with pytest.raises(RemoteError):
        app.get("failing", "x")
    assert len(runs("failing", "x")) == 2

    # A value that cannot be encoded: every waiter gets a CodecError, nothing is
    # cached, and the next get computes again (RELIABILITY T18).
    with pytest.raises(RemoteError) as raised:
        app.get("unencodable", "v")
    assert raised.value.type_name == "distq.CodecError"
    assert "cannot encode" in raised.value.message
    unencodable_key = native_keys(app, "unencodable", "v").value
    assert app.client.run(single(Command(("EXISTS", unencodable_key)))) == 0
    with pytest.raises(RemoteError):
        app.get("unencodable", "v")
    assert len(runs("unencodable", "v")) == 2

    # The service's default ttl (60 s); a second get is served from the cache.
    assert app.get("square", 7) == 49
    assert app.get("square", 7) == 49
    assert len(runs("square", 7)) == 1
    assert 55_000 < pttl(app, native_keys(app, "square", 7).value) <= 60_000

    # forget, then get: computed again.
    assert app.forget("square", 7) is True
    assert app.forget("square", 7) is False
    assert app.get("square", 7) == 49
    assert len(runs("square", 7)) == 2

    # No ttl: delivered to the waiting client, not cached.
    assert app.get("uncached", "u") == "u run 1"
    assert app.client.run(single(Command(("EXISTS", native_keys(app, "uncached", "u").value)))) == 0
    assert app.get("uncached", "u") == "u run 2"

    # Per-result expiry: Cached(value, ttl=1) is cached for 1 s, then computed again.
    assert app.get("per_result", "p", 1) == "p run 1"
    assert app.get("per_result", "p", 1) == "p run 1"
    value_key = native_keys(app, "per_result", "p", 1).value
    assert 0 < pttl(app, value_key) <= 1000
    wait_for(lambda: pttl(app, value_key) == -2, 3, "the 1 s result to expire")
    assert app.get("per_result", "p", 1) == "p run 2"

    # Prefetch, then get: served by the prefetched computation (counted once).
    assert app.prefetch("square", 8) is True
    assert app.prefetch("square", 8) is False  # in flight or cached already
    assert app.get("square", 8) == 64
    assert app.prefetch("square", 8) is False
    assert len(runs("square", 8)) == 1


def check_distcl_semantics(app: App, namespace: str) -> None:
    """The same over the DisTcl protocol."""
    with pytest.raises(RemoteError) as raised:
        app.get("dq_fail", namespace, "y")
    assert (raised.value.type_name, raised.value.message) == ("TclError", "bad y")
    with pytest.raises(RemoteError):
        app.get("dq_fail", namespace, "y")
    assert len(runs("dq_fail", namespace, "y")) == 2
    assert app.get("dq_plain", namespace, "u") == "u run 1"
    assert app.get("dq_plain", namespace, "u") == "u run 2"
    assert app.get("dq_brief", namespace, "b", "1") == "b run 1"
    assert app.get("dq_brief", namespace, "b", "1") == "b run 1"
    brief_key = f"v:dq_brief:{namespace} b 1"
    wait_for(lambda: pttl(app, brief_key) == -2, 3, "the 1 s DisTcl result to expire")
    assert app.get("dq_brief", namespace, "b", "1") == "b run 2"
    assert app.get("dq_echo", namespace, "e") == json.dumps([namespace, "e"])
    assert app.forget("dq_echo", namespace, "e") is True
    assert app.get("dq_echo", namespace, "e") == json.dumps([namespace, "e"])
    assert len(runs("dq_echo", namespace, "e")) == 2
    assert app.prefetch("dq_echo", namespace, "pre") is True
    wait_for(lambda: pttl(app, f"v:dq_echo:{namespace} pre") > 0, 10, "the prefetched value")
    assert app.prefetch("dq_echo", namespace, "pre") is False
    assert app.get("dq_echo", namespace, "pre") == json.dumps([namespace, "pre"])
    assert len(runs("dq_echo", namespace, "pre")) == 1

    # DisTcl services take positional arguments only.
    for call in (app.get, app.prefetch, app.forget):
        with pytest.raises(InvalidArgument):
            call("dq_echo", namespace, flag=1)

    async def aget_with_kwargs() -> None:
        try:
            await app.aget("dq_echo", namespace, flag=1)
        finally:
            await app.aclient.close()

    with pytest.raises(InvalidArgument):
        asyncio.run(aget_with_kwargs())


def commands_sent(app: App, url: str, action: Callable[[], Any]) -> list[str]:
    """The commands the server received from ``app``'s connection while ``action`` ran
    (seen by ``MONITOR``; the app must be used by this thread only, so its pool holds
    one connection)."""
    info = app.client.run(single(Command(("CLIENT", "INFO")))).decode()
    addr = next(f[5:] for f in info.split() if f.startswith("addr="))
    sentinel = f"sentinel-{uuid.uuid4().hex}"
    monitor_client = redis.Redis.from_url(url, socket_timeout=10)
    seen: list[str] = []
    try:
        with monitor_client.monitor() as monitor:
            action()
            app.client.run(single(Command(("ECHO", sentinel))))
            deadline = time.monotonic() + 10
            for event in monitor.listen():
                if f"{event['client_address']}:{event['client_port']}" == addr:
                    if sentinel in event["command"]:
                        break
                    seen.append(event["command"])
                assert time.monotonic() < deadline, f"no sentinel from {addr} in MONITOR"
    finally:
        monitor_client.close()
    return seen


def test_get_many_async_twins_and_round_trips(
    app: App, procs: AppProcesses, url: str, namespace: str
) -> None:
    worker = procs.start("worker", "-c", "2", live=3)
    assert app.get("square", 2) == 4

    # get_many: the missing keys are computed in parallel by the 2 processes.
    calls = [(10 + i, 0.8) for i in range(4)]
    started = time.monotonic()
    assert app.get_many("square", [*calls, (2,)]) == [100, 121, 144, 169, 4]
    elapsed = time.monotonic() - started
    # ceil(4 / 2) x 0.8 = 1.6 s, not 4 x 0.8 = 3.2 s.
    assert 1.5 < elapsed < 2.8, f"4 x 0.8 s on 2 processes took {elapsed:.2f} s"
    entries = [(pid, at) for pid, at, (x,) in services_app.ledger_entries("square") if x >= 10]
    assert len(entries) == 4 and {pid for pid, _ in entries} <= worker.children()
    # Both processes computed, at the same time (their computations overlapped).
    assert len({pid for pid, _ in entries}) == 2
    assert any(p != q and abs(a - b) < 0.8 for p, a in entries for q, b in entries)

    # The async twins.
    async def twins() -> None:
        try:
            await twins_in_loop()
        finally:
            await app.aclient.close()  # this loop's connections (App.close closes the sync ones)

    async def twins_in_loop() -> None:
        assert await app.aget("asquare", 5) == 25
        assert await app.aget("asquare", 5) == 25
        assert await app.aprefetch("asquare", 6) is True
        assert await app.aget("asquare", 6) == 36
        assert await app.aforget("asquare", 5) is True
        assert await app.aget("asquare", 5) == 25
        assert await app.aget_many("asquare", [1, (2,), 5, 6]) == [1, 4, 25, 36]
        assert await app.aget("dq_echo", namespace, "a b") == json.dumps([namespace, "a b"])
        assert await app.aprefetch("dq_echo", namespace, "a b") is False
        assert await app.aforget("dq_echo", namespace, "a b") is True

    asyncio.run(twins())
    assert len(runs("asquare", 5)) == 2
    assert len(runs("asquare", 6)) == 1
    assert len(runs("asquare", 1)) == len(runs("asquare", 2)) == 1

    # A cached get is one round trip: exactly one EVALSHA (native), one GET (DisTcl).
    app.close()
    assert app.get("square", 2) == 4  # a new pool of one connection
    sent = commands_sent(app, url, lambda: app.get("square", 2))
    assert len(sent) == 1 and sent[0].split()[0].upper() == "EVALSHA", sent
    assert app.get("dq_echo", namespace, "c") == json.dumps([namespace, "c"])
    sent = commands_sent(app, url, lambda: app.get("dq_echo", namespace, "c"))
    assert sent == [f"GET v:dq_echo:{namespace} c"]  # (MONITOR's arguments joined by spaces)


# Servers dying -------------------------------------------------------------------------------


def _owner(workers: list[Process], pid: int) -> Process:
    return next(w for w in workers if pid in w.children())


def test_native_server_killed_mid_computation(app: App, procs: AppProcesses) -> None:
    # Each worker: one process for svc.hold, and its DisTcl server process.
    workers = [procs.start("worker", "-c", "1", "-Q", "svc.hold", live=2 * n) for n in (1, 2)]
    with ThreadPoolExecutor(3) as clients:
        waiting: list[Future[Any]] = [
            clients.submit(app.get, "hold", "h", timeout=25) for _ in range(3)
        ]
        [victim] = wait_for(lambda: runs("hold", "h"), 20, "the computation to start")
        victim_worker = _owner(workers, victim)
        [survivor] = [w for w in workers if w is not victim_worker]
        time.sleep(0.3)  # the clients are waiting
        killed_at = time.monotonic()
        victim_worker.kill()  # SIGKILL: the computing process and its supervisor
        assert [f.result(timeout=30) for f in waiting] == ["held h"] * 3
        took = time.monotonic() - killed_at
    computed = runs("hold", "h")
    assert computed[0] == victim
    assert computed[1] != victim and computed[1] in survivor.children()
    assert took < 10, f"the value came {took:.1f} s after the kill"
    assert app.get("hold", "h") == "held h"  # cached by the survivor's computation


def test_distcl_server_killed_mid_computation(
    app: App, procs: AppProcesses, namespace: str
) -> None:
    servers = [procs.start("serve", "-s", "dq_hold", live=n) for n in (1, 2)]
    with ThreadPoolExecutor(3) as clients:
        waiting: list[Future[Any]] = [
            clients.submit(app.get, "dq_hold", namespace, "h", timeout=25) for _ in range(3)
        ]
        [victim] = wait_for(lambda: runs("dq_hold", namespace, "h"), 20, "the computation")
        victim_server = _owner(servers, victim)
        [survivor] = [s for s in servers if s is not victim_server]
        time.sleep(0.3)
        killed_at = time.monotonic()
        victim_server.kill()
        assert [f.result(timeout=30) for f in waiting] == ["held h"] * 3
        took = time.monotonic() - killed_at
    computed = runs("dq_hold", namespace, "h")
    assert len(computed) == 2, computed  # taken over once, not recomputed per client
    assert computed[0] == victim and computed[1] in survivor.children()
    assert took < 10, f"the value came {took:.1f} s after the kill"
    assert "taking over dq_hold" in survivor.log()


# DisTcl's wire protocol, the Tcl side played with raw commands ------------------------------------

#: Arguments that need Tcl quoting, and the Tcl list DisTcl makes of them
#: (checked against tclsh: ``list tok "a b" "{x" "}y{" c{d} {[$x;]} back\\ ...``).
WORDS = ["a b", "{x", "}y{", "c{d}", "[$x;]", "back\\", 'q"q', "tab\there", "é ü"]
TCL_LIST = '{a b} \\{x \\}y\\{ c{d} {[$x;]} back\\\\ q\\"q {tab\there} {é ü}'


def test_distcl_protocol_tcl_client_with_raw_commands(
    app: App, procs: AppProcesses, raw: redis.Redis, namespace: str
) -> None:
    procs.start("serve", "-s", "dq_echo", "-s", "dq_fail", "-s", "dq_plain", live=1)
    key = f"{namespace} {TCL_LIST}"  # the namespace is a bare Tcl word
    value = "0:" + json.dumps([namespace, *WORDS], ensure_ascii=False)

    # distcl::get: GET v:S:KEY; (nil) → RPUSH q:S KEY; BLPOP w:S:KEY → "STATUS:VALUE".
    assert raw.get(f"v:dq_echo:{key}") is None
    raw.rpush("q:dq_echo", key)
    assert raw.blpop([f"w:dq_echo:{key}"], 10) == (f"w:dq_echo:{key}", value)
    assert raw.get(f"v:dq_echo:{key}") == value  # cached: the service has ttl=60
    assert 50 <= raw.ttl(f"v:dq_echo:{key}") <= 60
    assert raw.exists(f"r:dq_echo:{key}", f"w:dq_echo:{key}") == 0  # run list popped, waitlist read
    # A Python get of the same arguments is the same KEY, served from the cache.
    assert app.get("dq_echo", namespace, *WORDS) == value[2:]
    assert len(runs("dq_echo", namespace, *WORDS)) == 1

    # An error: status 1, the message as the value, not cached.
    fail_key = f"{namespace} {{boom x}}"
    raw.rpush("q:dq_fail", fail_key)
    assert raw.blpop([f"w:dq_fail:{fail_key}"], 10) == (f"w:dq_fail:{fail_key}", "1:bad boom x")
    assert raw.exists(f"v:dq_fail:{fail_key}") == 0

    # No expiry: delivered, not cached.
    plain_key = f"{namespace} p"
    raw.rpush("q:dq_plain", plain_key)
    assert raw.blpop([f"w:dq_plain:{plain_key}"], 10)[1] == "0:p run 1"
    assert raw.exists(f"v:dq_plain:{plain_key}") == 0

    # distcl::prefetch: EXISTS v:S:KEY, RPUSH p:S KEY; computed and cached, nobody waits.
    pre_key = f"{namespace} {{pre fetched}}"
    assert raw.exists(f"v:dq_echo:{pre_key}") == 0
    raw.rpush("p:dq_echo", pre_key)
    cached = wait_for(lambda: raw.get(f"v:dq_echo:{pre_key}"), 10, "the prefetched value")
    assert cached == "0:" + json.dumps([namespace, "pre fetched"])
    assert raw.exists(f"w:dq_echo:{pre_key}", f"r:dq_echo:{pre_key}") == 0

    # distcl::forget: DEL v:S:KEY w:S:KEY.
    assert raw.delete(f"v:dq_echo:{pre_key}", f"w:dq_echo:{pre_key}") == 1
    assert app.get("dq_echo", namespace, "pre fetched") == cached[2:]
    assert len(runs("dq_echo", namespace, "pre fetched")) == 2


def test_distcl_protocol_tcl_server_with_raw_commands(
    app: App, raw: redis.Redis, namespace: str
) -> None:
    # No server runs dq_raw: this test is its server, step by step as distcl::serve.
    service, server_id = "dq_raw", f"{namespace}-raw"
    key = f"{namespace} {TCL_LIST}"
    control, queues = f"z:{server_id}", [f"z:{server_id}", f"q:{service}", f"p:{service}"]
    with ThreadPoolExecutor(3) as clients:
        waiting = [
            clients.submit(app.get, service, namespace, *WORDS, timeout=15) for _ in range(2)
        ]
        wait_for(lambda: raw.llen(f"q:{service}") == 2, 10, "both gets to be queued")
        # First request: recorded first on the run list, so this server computes it.
        assert raw.blpop(queues, 5) == (f"q:{service}", key)
        assert raw.rpush(f"r:{service}:{key}", 1) == 1
        assert raw.expire(f"r:{service}:{key}", 10)
        # Second request for the same KEY: already running, only recorded.
        assert raw.blpop(queues, 5) == (f"q:{service}", key)
        assert raw.rpush(f"r:{service}:{key}", 1) == 2
        # The computation ends (return -secs2keep 30): cache, then one push per get.
        result = "0:computed {by} [raw] tcl"
        assert raw.set(f"v:{service}:{key}", result, ex=30)
        requests = raw.lpop(f"r:{service}:{key}", 999)
        assert requests == ["1", "1"]
        for _ in range(sum(int(r) for r in requests)):
            raw.rpush(f"w:{service}:{key}", result)
        raw.expire(f"w:{service}:{key}", 10)
        assert [f.result(timeout=15) for f in waiting] == ["computed {by} [raw] tcl"] * 2
        # Now cached: a get does not queue anything.
        assert app.get(service, namespace, *WORDS) == "computed {by} [raw] tcl"
        assert raw.llen(f"q:{service}") == 0

        # An error (Tcl status 1), not cached: carried to the caller.
        failing = clients.submit(app.get, service, namespace, "err", timeout=15)
        assert raw.blpop(queues, 10) == (f"q:{service}", f"{namespace} err")
        assert raw.rpush(f"r:{service}:{namespace} err", 1) == 1
        assert raw.lpop(f"r:{service}:{namespace} err", 999) == ["1"]
        raw.rpush(f"w:{service}:{namespace} err", "1:no such thing: {err}")
        with pytest.raises(RemoteError) as raised:
            failing.result(timeout=15)
        assert (raised.value.type_name, raised.value.message) == (
            "TclError",
            "no such thing: {err}",
        )

    # A prefetch arrives on p:S, recorded as 0 on the run list: nobody to answer.
    assert app.prefetch(service, namespace, "later on") is True
    assert raw.blpop(queues, 5) == (f"p:{service}", f"{namespace} {{later on}}")
    assert raw.rpush(f"r:{service}:{namespace} {{later on}}", 0) == 1
    raw.set(f"v:{service}:{namespace} {{later on}}", "0:soon", ex=30)
    assert raw.lpop(f"r:{service}:{namespace} {{later on}}", 999) == ["0"]
    assert app.prefetch(service, namespace, "later on") is False  # cached
    assert app.get(service, namespace, "later on") == "soon"
    assert app.forget(service, namespace, "later on") is True
    assert raw.exists(f"v:{service}:{namespace} {{later on}}") == 0
    assert raw.llen(control) == 0


def test_serve_id_stops_on_distcl_stop(
    app: App, procs: AppProcesses, raw: redis.Redis, namespace: str
) -> None:
    server_id = f"{namespace}-srv"
    server = procs.start("serve", "-s", "dq_echo", "--id", server_id, live=1)
    assert app.get("dq_echo", namespace, "hi") == json.dumps([namespace, "hi"])
    raw.rpush(f"z:{server_id}", "stop")  # what DisTcl's operator sends
    assert server.proc.wait(20) == 0, server.log()
    assert f"Control queue is 'z:{server_id}'" in server.log()
    server.assert_no_children_left()
    assert raw.llen(f"z:{server_id}") == 0


def test_gets_queued_behind_a_distcl_computation_share_it(
    app: App, procs: AppProcesses, namespace: str
) -> None:
    """One DisTcl server computes one request at a time: gets of the same KEY queued
    behind its computation are served its result, not computed once each (even
    uncached); a request taken off the queue once the KEY is cached is answered
    from the cache."""
    procs.start("serve", "-s", "dq_slow", live=1)
    with ThreadPoolExecutor(5) as clients:
        args = (namespace, "same", "0.5", "")
        waiting = [clients.submit(app.get, "dq_slow", *args, timeout=15) for _ in range(5)]
        assert [f.result(timeout=20) for f in waiting] == ["same run 1"] * 5
    assert len(runs("dq_slow", namespace, "same", "0.5", "")) == 1
