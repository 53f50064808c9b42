"""Real programs nobody here wrote, on ``reactor.aio``: uvicorn serving an
ASGI app with ``--loop reactor.aio:new_event_loop``, an aiohttp web server
run by ``web.run_app(..., loop=reactor.aio.new_event_loop())``, and an
aiohttp client session on a reactor loop. Each server is a child process
on a loopback port; the checks are curl (when installed), a bounded
keep-alive load with zero errors, the loop type as the app itself sees it,
and a clean exit on SIGINT. Skipped when uvicorn or aiohttp is not
installed (``pip install -e '.[aio-apps]'``)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import reactor.aio

from ..support import LOOP_BACKENDS

MiB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- helpers

def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class App:
    """A server child process; its output is read by a thread (no pipe
    fills up) and kept for the failure messages."""

    def __init__(self, argv: list[str], port: int, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        environ = dict(os.environ)
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
        environ.update(env or {})
        self.port = port
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=environ, cwd=cwd)
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line.decode(errors="replace"))

    def text(self) -> str:
        return "".join(self.output)[-4000:]

    def wait_accepting(self, timeout: float = 20.0) -> float:
        """Poll connect() until the server accepts; the time it took."""
        start = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                self._reader.join(5)
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return time.monotonic() - start
            except OSError:
                pass
            if time.monotonic() - start > timeout:
                pytest.fail(f"server not accepting within {timeout} s:\n{self.text()}")
            time.sleep(0.05)  # between two polls

    def interrupt(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGINT; (exit status, seconds it took to exit)."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"server did not exit within {timeout} s of SIGINT:\n{self.text()}")
        self._reader.join(5)
        return status, time.monotonic() - start

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)
        self.proc.stdout.close()


def curl_json(port: int, path: str = "/") -> Any | None:
    """The JSON body curl gets; None when there is no curl."""
    curl = shutil.which("curl")
    if curl is None:
        return None
    done = subprocess.run([curl, "-s", "-S", "-f", "-m", "10", f"http://127.0.0.1:{port}{path}"],
                          capture_output=True, timeout=20)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class Load:
    """``connections`` threads, each one keep-alive HTTP/1.1 connection
    (http.client) sending ``per_connection`` GETs and one POST echo;
    every error is kept. Bounded: each socket operation has a timeout and
    the threads are joined with a deadline."""

    def __init__(self, port: int, connections: int = 20, per_connection: int = 25, echo_size: int = 64 * 1024) -> None:
        self.port = port
        self.connections = connections
        self.per_connection = per_connection
        self.echo_body = os.urandom(echo_size)
        self.ok = 0
        self.errors: list[str] = []
        self.loops: set[str] = set()
        self.sockets_per_connection: list[int] = []
        self._lock = threading.Lock()

    def _one_connection(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        sockets = set()
        try:
            for i in range(self.per_connection + 1):
                if i == self.per_connection:
                    conn.request("POST", "/echo", body=self.echo_body,
                                 headers={"Content-Type": "application/octet-stream"})
                else:
                    conn.request("GET", "/")
                sockets.add(id(conn.sock))
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    raise AssertionError(f"status {response.status}: {body[:200]!r}")
                if i == self.per_connection:
                    if body != self.echo_body:
                        raise AssertionError(f"echo of {len(self.echo_body)} B came back as {len(body)} B")
                else:
                    with self._lock:
                        self.loops.add(json.loads(body)["loop"])
                with self._lock:
                    self.ok += 1
        except Exception as exc:  # counted as an error of the load
            with self._lock:
                self.errors.append(repr(exc))
        finally:
            conn.close()
            with self._lock:
                self.sockets_per_connection.append(len(sockets))

    def run(self, timeout: float = 20.0) -> float:
        threads = [threading.Thread(target=self._one_connection, daemon=True) for _ in range(self.connections)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, start + timeout - time.monotonic()))
        assert not any(thread.is_alive() for thread in threads), f"load not done within {timeout} s"
        return time.monotonic() - start

    @property
    def expected(self) -> int:
        return self.connections * (self.per_connection + 1)


def check_load(port: int, label: str) -> Load:
    load = Load(port)
    elapsed = load.run()
    print(f"\n[{label}] {load.ok} requests over {load.connections} keep-alive connections in {elapsed:.2f} s "
          f"({load.ok / elapsed:.0f} req/s), {len(load.errors)} errors")
    assert load.errors == [], load.errors[:5]
    assert load.ok == load.expected
    assert load.loops == {"ReactorEventLoop"}
    # keep-alive: each thread kept its one connection for all its requests
    assert load.sockets_per_connection == [1] * load.connections
    return load


# ---------------------------------------------------------------- uvicorn

ASGI_APP = '''
import asyncio
import json


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/echo":
        payload = body
    else:
        loop = asyncio.get_running_loop()
        payload = json.dumps({"loop": type(loop).__name__, "module": type(loop).__module__,
                              "backend": getattr(loop, "backend", None)}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
'''


@pytest.mark.parametrize("backend", LOOP_BACKENDS)
def test_uvicorn_serves_an_asgi_app_on_reactor(tmp_path, backend):
    """``python -m uvicorn mod:app --loop reactor.aio:new_event_loop``
    (REACTOR_BACKEND picks the backend): the app runs on a
    ReactorEventLoop, curl and 520 keep-alive requests get answers with no
    error, and SIGINT stops uvicorn with status 0."""
    uvicorn = pytest.importorskip("uvicorn")
    if tuple(int(part) for part in uvicorn.__version__.split(".")[:2]) < (0, 36):
        pytest.skip(f"uvicorn {uvicorn.__version__} has no --loop module:factory (0.36 does)")
    (tmp_path / "reactor_asgi_app.py").write_text(ASGI_APP)
    port = free_port()
    app = App([sys.executable, "-m", "uvicorn", "reactor_asgi_app:app", "--app-dir", str(tmp_path),
               "--host", "127.0.0.1", "--port", str(port), "--loop", "reactor.aio:new_event_loop",
               "--no-access-log", "--timeout-keep-alive", "30"],
              port, env={"REACTOR_BACKEND": backend}, cwd=tmp_path)
    try:
        started = app.wait_accepting()
        info = curl_json(port)
        if info is not None:
            assert info == {"loop": "ReactorEventLoop", "module": "reactor.aio.loop", "backend": backend}
        check_load(port, f"uvicorn, {backend}")
        status, took = app.interrupt()
        print(f"[uvicorn, {backend}] accepting after {started:.2f} s; exited {status} {took:.2f} s after SIGINT")
        assert status == 0, app.text()
        assert took < 5.0
        assert "Traceback" not in app.text(), app.text()
    finally:
        app.close()


# ---------------------------------------------------------------- aiohttp

AIOHTTP_SERVER = '''
import asyncio
import sys

from aiohttp import web

import reactor.aio


async def info(request):
    loop = asyncio.get_running_loop()
    return web.json_response({"loop": type(loop).__name__, "module": type(loop).__module__,
                              "backend": loop.backend})


async def echo(request):
    return web.Response(body=await request.read(), content_type="application/octet-stream")


app = web.Application(client_max_size=8 * 1024 * 1024)
app.router.add_get("/", info)
app.router.add_post("/echo", echo)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), loop=reactor.aio.new_event_loop(backend=sys.argv[2]),
            print=None, access_log=None, shutdown_timeout=5)
'''


@pytest.fixture
def aiohttp_server(request: pytest.FixtureRequest) -> Any:
    """An aiohttp web server child on reactor.aio (backend: the param, or
    epoll); killed at the end if the test did not stop it."""
    pytest.importorskip("aiohttp")
    backend = getattr(request, "param", "epoll")
    if backend not in LOOP_BACKENDS:
        pytest.skip(f"no {backend} backend")
    port = free_port()
    app = App([sys.executable, "-c", AIOHTTP_SERVER, str(port), backend], port)
    app.backend = backend
    try:
        app.started = app.wait_accepting()
        yield app
    finally:
        app.close()


@pytest.mark.parametrize("aiohttp_server", LOOP_BACKENDS, indirect=True)
def test_aiohttp_web_app_runs_on_reactor(aiohttp_server):
    """``web.run_app(app, loop=reactor.aio.new_event_loop())``: the handler
    runs on a ReactorEventLoop, curl and 520 keep-alive requests get answers
    with no error, and SIGINT ends run_app with status 0."""
    app = aiohttp_server
    info = curl_json(app.port)
    if info is not None:
        assert info == {"loop": "ReactorEventLoop", "module": "reactor.aio.loop", "backend": app.backend}
    check_load(app.port, f"aiohttp server, {app.backend}")
    status, took = app.interrupt()
    print(f"[aiohttp server, {app.backend}] accepting after {app.started:.2f} s; "
          f"exited {status} {took:.2f} s after SIGINT")
    assert status == 0, app.text()
    assert took < 5.0
    assert "Traceback" not in app.text(), app.text()


@pytest.mark.parametrize("backend", LOOP_BACKENDS)
def test_aiohttp_client_session_on_reactor(aiohttp_server, backend):
    """An aiohttp ClientSession on reactor.aio (its connector goes through
    the loop's create_connection and getaddrinfo) fetching from the aiohttp
    server: 300 GETs at most 20 at a time over pooled connections, and
    1 MiB POST echoes, every one right."""
    aiohttp = pytest.importorskip("aiohttp")
    app = aiohttp_server
    base = f"http://127.0.0.1:{app.port}"
    body = os.urandom(MiB)
    result: dict[str, Any] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        errors: list[dict] = []
        loop.set_exception_handler(lambda loop, context: errors.append(context))
        result["client_loop"] = type(loop).__name__
        connector = aiohttp.TCPConnector(limit=20)
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def get() -> str:
                async with session.get(f"{base}/") as response:
                    assert response.status == 200
                    return (await response.json())["loop"]

            async def post() -> bytes:
                async with session.post(f"{base}/echo", data=body) as response:
                    assert response.status == 200
                    return await response.read()

            async with asyncio.timeout(20):
                result["loops"] = set(await asyncio.gather(*(get() for _ in range(300))))
                result["echoes"] = await asyncio.gather(*(post() for _ in range(4)))
        result["errors"] = errors

    start = time.monotonic()
    reactor.aio.run(main(), backend=backend)
    elapsed = time.monotonic() - start
    print(f"\n[aiohttp client, {backend}] 300 GETs + 4 x 1 MiB echoes in {elapsed:.2f} s")
    assert result["client_loop"] == "ReactorEventLoop"
    assert result["loops"] == {"ReactorEventLoop"}
    assert all(echo == body for echo in result["echoes"])
    assert result["errors"] == []
    status, _ = app.interrupt()
    assert status == 0, app.text()
    assert "Traceback" not in app.text(), app.text()

