"""Admission to ``lykta api``: at most as many requests at work as the connection pool has connections, the
others queued for a while, and beyond that refused at once with 503 and ``Retry-After``.

Handlers run their blocking database code in worker threads. Without a limit, more concurrent requests than
there are worker threads all blocked on the pool, and the requests that held connections could not finish
(finishing needs a worker thread as well): the API stopped for good. Admitted, each request finds a
connection at once and gives it back when it ends, whatever the client does meanwhile.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Refuse = Callable[[Scope, Receive, Send, int], Awaitable[None]]

EXEMPT = ("/docs", "/redoc", "/openapi.json")
"""Pages that touch no database."""


class Admission:
    """ASGI middleware: ``limit`` requests at work, ``queue`` more waiting up to ``wait_s`` each."""

    def __init__(self, app: ASGIApp, limit: int, queue: int, wait_s: float, refuse: Refuse) -> None:
        self.app = app
        self.limit = limit
        self.queue = queue
        self.wait_s = wait_s
        self.refuse = refuse
        self.working = asyncio.Semaphore(limit)
        self.waiting = 0
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(EXEMPT):
            await self.app(scope, receive, send)
            return
        if self.waiting >= self.queue:
            self.refused += 1
            await self.refuse(scope, receive, send, 1)
            return
        self.waiting += 1
        try:
            async with asyncio.timeout(self.wait_s):
                await self.working.acquire()
        except TimeoutError:
            self.refused += 1
            await self.refuse(scope, receive, send, max(1, math.ceil(self.wait_s / 2)))
            return
        finally:
            self.waiting -= 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.working.release()
