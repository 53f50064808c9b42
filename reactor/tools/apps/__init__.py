"""The programs ``python -m reactor bench apps`` runs: real libraries on a loop.

Each is run as ``python -m reactor.tools.apps.NAME`` in its own process, on
the loop named by ``--loop`` (``reactor.aio``, ``uvloop`` or ``asyncio``), so
that literally the same program is measured on every loop:

``http_server``  uvicorn serving a plain ASGI app, or an aiohttp web server:
                 ``GET /`` answers 13 bytes, keep-alive (the program under test)
``http_load``    the HTTP/1.1 keep-alive load against it, paced, on another CPU;
                 it reads the server's CPU time at the edges of its window
``db_client``    asyncpg or redis-py doing small queries against a real server
                 (the client is the program under test)
``_paced``       what the load and the client share: the paced schedule,
                 the measured window, a process's CPU time, percentiles

Nothing in the library imports them.
"""
