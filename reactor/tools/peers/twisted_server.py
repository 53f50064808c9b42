"""The close/echo server on Twisted (``listenTCP`` + a Protocol), on its
default reactor (epoll on Linux)."""

from __future__ import annotations

from typing import Any

from twisted.internet import protocol
from twisted.internet import reactor as _reactor

#: the global reactor module poses as an interface to type checkers; we call its methods
reactor: Any = _reactor

try:
    from ._common import BACKLOG, announce, announce_idle, parse_args
except ImportError:  # run by path: python reactor/tools/peers/twisted_server.py
    from _common import BACKLOG, announce, announce_idle, parse_args  # type: ignore[no-redef]


class Close(protocol.Protocol):
    def connectionMade(self):
        self.transport.loseConnection()


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


def main() -> None:
    args = parse_args(__doc__)
    factory = protocol.Factory.forProtocol(Close if args.mode == "close" else Echo)
    port = reactor.listenTCP(args.port, factory, backlog=BACKLOG, interface=args.host)
    announce(args.host, port.getHost().port)
    if args.idle_listener:
        idle = reactor.listenTCP(0, protocol.Factory.forProtocol(protocol.Protocol), backlog=BACKLOG,
                                 interface=args.host)
        announce_idle(args.host, idle.getHost().port)
    reactor.run()  # installs SIGINT/SIGTERM handlers that stop it


if __name__ == "__main__":
    main()
