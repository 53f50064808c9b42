"""RSS per idle TLS connection of a server process: reactor (``serve``), reactor.aio and stock asyncio.

tracemalloc sees Python's objects only; OpenSSL's memory (an SSL object and
its buffers per connection) is outside it. This measures what the machine
pays: the server's VmRSS before and after N clients complete a TLS handshake
and stay idle, divided by N.

    python bench/tls_rss.py [--connections 1000] [--cert PEM --key PEM]

Without --cert/--key a self-signed pair is made with the openssl command.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time

ASYNCIO_SERVER = r"""
import asyncio, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
class Idle(asyncio.Protocol):
    pass
async def main():
    if sys.argv[3] == "aio":
        import reactor.aio  # noqa
    server = await asyncio.get_running_loop().create_server(Idle, "127.0.0.1", 0, ssl=ctx, backlog=4096)
    print("listening on 127.0.0.1:%d" % server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(3600)
if sys.argv[3] == "aio":
    import reactor.aio
    reactor.aio.run(main())
else:
    asyncio.run(main())
"""


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read())[1])


def measure(argv: list[str], connections: int) -> float:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline().split()[2].rsplit(":", 1)[1])
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        warm = [context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="x")
                for _ in range(50)]  # allocator and caches warmed first
        time.sleep(1)
        before = rss_kib(proc.pid)
        clients = [context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="x")
                   for _ in range(connections)]
        time.sleep(2)
        after = rss_kib(proc.pid)
        for sock in clients + warm:
            sock.close()
        return (after - before) / connections
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = args.cert, args.key
        if cert is None:
            cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                            "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
                           check=True, capture_output=True)
        servers = {
            "reactor (serve)": [sys.executable, "-m", "reactor", "serve", "--port", "0", "--protocol", "discard",
                                "--tls-cert", cert, "--tls-key", key, "--idle-timeout", "0"],
            "reactor.aio": [sys.executable, "-c", ASYNCIO_SERVER, cert, key, "aio"],
            "asyncio": [sys.executable, "-c", ASYNCIO_SERVER, cert, key, "asyncio"],
        }
        for name, argv in servers.items():
            print(f"{name:16} {measure(argv, args.connections):6.1f} KiB RSS per idle TLS connection", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
