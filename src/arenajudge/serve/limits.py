"""Guards in front of the judge service: request body limits and a free listening port.

Plain ASGI and sockets, no web framework: ``serve.app`` wraps its app in
:class:`BodyLimit` and ``serve.run`` calls :func:`check_can_listen` before starting uvicorn.
"""

from __future__ import annotations

import errno
import json
import re
import socket
from collections.abc import Callable
from typing import Any

import numpy as np

from arenajudge.errors import ConfigError

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in a body (a judge request needs 4)."""
DRAIN_LIMIT = 64_000_000
"""Most bytes of a refused body read and dropped so that the client can read the 413."""


class BodyLimit:
    """ASGI middleware: answer 413 to a body over ``max_body`` bytes and 422 to one that
    nests deeper than ``MAX_JSON_DEPTH``, whatever its Content-Type.

    The body is read (at most ``max_body`` bytes of it) before the app sees it, so an
    over-long chunked body gets a 413 rather than a parse error, and no JSON parser
    downstream (FastAPI's, pydantic's, ours) can recurse past Python's stack.
    """

    def __init__(self, app: Any, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body:
            return await self._refuse(
                413, self._too_large(), receive, send, unread=int(declared) <= DRAIN_LIMIT
            )
        chunks, size, more = [], 0, True
        while more and size <= self.max_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
        if size > self.max_body:
            return await self._refuse(413, self._too_large(), receive, send, unread=more)
        body = b"".join(chunks)
        depth = json_depth(body)
        if depth > MAX_JSON_DEPTH:
            return await self._refuse(
                422,
                {
                    "detail": [
                        {
                            "field": "body",
                            "type": "json_too_deep",
                            "message": (
                                f"body nests {depth:,} levels deep; "
                                f"at most {MAX_JSON_DEPTH} are accepted"
                            ),
                        }
                    ]
                },
                receive,
                send,
                unread=False,
            )
        replay_messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay() -> dict:
            return replay_messages.pop() if replay_messages else await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> dict[str, str]:
        return {
            "detail": f"request body is over the {self.max_body:,}-byte limit; send "
            "fewer or shorter battles per request"
        }

    @staticmethod
    async def _refuse(
        status: int, content: Any, receive: Callable, send: Callable, *, unread: bool
    ) -> None:
        """Answer ``status`` with ``content`` as JSON and close the connection, first
        reading and dropping the rest of the body (up to ``DRAIN_LIMIT`` bytes) when
        ``unread``: a plain client (urllib) sends its whole body before it reads, and a
        server that closes on unread bytes makes the kernel reset the connection, losing
        the answer."""
        drained = 0
        while unread and drained <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            drained += len(message.get("body", b""))
            unread = message.get("more_body", False)
        body = json.dumps(content, ensure_ascii=False).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPENERS = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSERS = np.frombuffer(b"]}", dtype=np.uint8)


def json_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in ``body``, counted without parsing it.

    Brackets inside strings do not count; ``body`` need not be valid JSON.
    """
    skeleton = np.frombuffer(_JSON_STRING.sub(b"", body), dtype=np.uint8)
    steps = np.isin(skeleton, _OPENERS).astype(np.int64) - np.isin(skeleton, _CLOSERS).astype(
        np.int64
    )
    return int(np.cumsum(steps).max(initial=0))


# Keyed by OSError.errno, which is None for an error without an errno.
_BIND_HINTS: dict[int | None, str] = {
    errno.EADDRINUSE: "the port is in use; stop what listens there or pick another --port",
    errno.EACCES: "permission denied (ports below 1024 need privileges); pick another --port",
    errno.EADDRNOTAVAIL: "no interface of this machine has that address; check --host",
}


def check_can_listen(host: str, port: int) -> None:
    """Bind ``host``:``port`` once and let go, so that a busy port is one clear error
    before any work (uvicorn's own report is several log lines and exit code 3).

    Raises
    ------
    ConfigError
        The address cannot be bound; the message names host, port and the flag to change.
    """
    where = f"cannot listen on {host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigError(f"{where}: unknown host ({exc.strerror}); check --host") from None
    with socket.socket(family, kind, proto) as probe:
        # as uvicorn does: a port left in TIME_WAIT by a stopped server counts as free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            hint = _BIND_HINTS.get(exc.errno, f"{exc.strerror}; check --host and --port")
            raise ConfigError(f"{where}: {hint}") from None
