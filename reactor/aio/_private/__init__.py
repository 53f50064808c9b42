"""The parts of asyncio's internals that ``reactor.aio`` touches, one module
per concern.

Reusing asyncio's own Future, Task, Server, TLS state machine and Unix pipe
and subprocess transports (as uvloop does) means naming private helpers, and
CPython changes those between versions (3.13 gave ``Server._attach`` an
argument; 3.14 removed the child watchers and deprecated the policies). Each
concern lives in one module here, which says what it reads on which
versions, and ``tests/aio/test_private.py`` checks every one of them against
the interpreter running the tests, so a CPython that changes one fails a
test naming it instead of breaking a line deep in the loop:

- ``futures``: ``futures._set_result_unless_cancelled``;
- ``servers``: how ``base_events.Server`` counts its connections;
- ``pipes``: the Unix pipe and subprocess transports;
- ``children``: how a subprocess's exit is noticed (child watchers, or a pidfd);
- ``policy``: the base of ``reactor.aio.EventLoopPolicy`` and its deprecation.
- ``ready_queue``: ``BaseEventLoop``'s iteration and ``call_soon`` and the
  fields of asyncio's ``Handle``, run compiled (the loop's hot path).

What reactor.aio does not touch is asyncio's across versions as it is: the
loop is a ``BaseEventLoop``, so ``create_task(**kwargs)``, eager tasks,
``_run_forever_setup`` and the rest come with the interpreter. The TLS
layer's overrides of ``asyncio.sslproto`` live with it in the net floor
(``reactor._net.tls``, checked by ``tests/net/test_tls.py``).
"""

import logging

__all__ = ["logger"]

#: asyncio logs under "asyncio"; so does its loop here
logger = logging.getLogger("asyncio")
