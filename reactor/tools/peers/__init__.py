"""The servers ``python -m reactor bench --peers`` compares reactor against.

Each is the same two servers -- ``close`` (accept, close at once) and ``echo``
(send back what arrives) -- written with one framework's usual public API, so
that the bench compares engines, not servers (``_common`` holds what they
share). They ship inside the package, so a pip install can run them; each is
a script, run by path (how the bench starts it: its process then imports only
its own framework) or as ``python -m reactor.tools.peers.NAME``:

``asyncio_server``  asyncio code on stock asyncio, uvloop or reactor.aio (``--loop``)
``tornado_server``  Tornado's ``TCPServer``
``twisted_server``  Twisted's ``listenTCP``
``trio_server``     ``trio.serve_tcp``
``c_server``        the physical floor: a C epoll loop (``_native/cserver.c``)
``tls_server``      ``bench tls``'s handshake-and-close server (asyncio code, ``--loop``)

Nothing in the library imports them.
"""
