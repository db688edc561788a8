"""The operator console's HTTP edge: trio sockets, h11 parsing, limits, auth, routing.

GET and HEAD only; one small request head (no bodies); a deadline on every request; a cap on
open connections; a ``Host`` check against DNS rebinding; the token by ``Authorization:
Bearer``, by cookie, or once by ``?token=`` (answered with a redirect that sets the cookie and
drops the token from the address bar). Data comes from a ``ConsoleSource`` (the node's
``NodeReport``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import h11
import trio

from ..state import entry_from_json, verify_chain
from . import _render
from ._token import token_matches

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
REQUEST_TIMEOUT = 10.0
IDLE_TIMEOUT = 30.0
MAX_CONNECTIONS = 16
MAX_REQUESTS_PER_CONNECTION = 100
BIND_RETRY = 5.0
COOKIE = "kms_console"
_COOKIE_LABEL = b"kmsnode/console/cookie/v1"
_SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


EVENTS_LIMIT = 100_000
"""Most flight-recorder events one ``/api/events`` response carries (page with since_ns)."""


class ConsoleSource(Protocol):
    """What the console reads from the node (all of it public: no share, no plaintext)."""

    chain_id: str

    def status(self, latency_window: float = 60.0) -> dict[str, Any]: ...

    def key_summaries(self) -> list[dict[str, Any]]: ...

    def dkg_summaries(self) -> list[dict[str, Any]]: ...

    def audit(self, query: Any) -> dict[str, Any]: ...

    async def verify_audit(self) -> dict[str, Any]: ...

    def events(self, since_ns: int, limit: int) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Response:
    """What a route returns: status, content type, body, extra headers."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


def _html(status: int, text: str) -> Response:
    return Response(status, "text/html; charset=utf-8", text.encode())


def _json(data: Any) -> Response:
    return Response(200, "application/json", json.dumps(data, indent=1).encode())


@dataclass(frozen=True)
class Query:
    """A parsed request target."""

    path: str
    params: Mapping[str, str]

    def int_param(self, name: str, default: int, low: int, high: int) -> int:
        """An integer query parameter clamped to ``[low, high]`` (default when absent/bad)."""
        raw = self.params.get(name)
        if raw is None or not raw.isdigit() or len(raw) > 19:
            return default
        return max(low, min(high, int(raw)))


class Console:
    """One node's console server; ``await nursery.start(console.run)``."""

    def __init__(self, source: ConsoleSource, node: int, host: str, port: int, token: str) -> None:
        self.source = source
        self.node = node
        self.host = host
        self.port = port
        self._token = token
        self._cookie = hmac.new(token.encode(), _COOKIE_LABEL, hashlib.sha256).hexdigest()
        self._limiter = trio.CapacityLimiter(MAX_CONNECTIONS)
        self.requests_served = 0
        self.requests_refused = 0
        self._routes: dict[str, Callable[[Query], Awaitable[Response]]] = {
            "/": self._overview,
            "/keys": self._keys,
            "/dkg": self._dkg,
            "/audit": self._audit,
            "/audit/verify": self._audit_verify,
            "/metrics": self._metrics,
            "/api/status": self._api_status,
            "/api/keys": self._api_keys,
            "/api/dkg": self._api_dkg,
            "/api/audit": self._api_audit,
            "/api/events": self._api_events,
        }

    @property
    def allowed_hosts(self) -> frozenset[bytes]:
        """``Host`` header values a browser on this machine sends to the console."""
        names = ["127.0.0.1", "localhost"] if self.host != "::1" else ["[::1]", "localhost"]
        if self.host not in ("127.0.0.1", "::1"):
            names.append(self.host)
        return frozenset(f"{n}:{self.port}".encode() for n in names)

    async def run(
        self,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,  # type: ignore[name-defined,unused-ignore]
    ) -> None:
        """Listen until cancelled; reports started once bound (``port`` 0 picks one).

        A port that is taken does not stop the node (the console is for operators, the node
        serves clients without it): the error is logged and binding retried every few seconds.
        """
        started = False
        while True:
            try:
                listeners = await trio.open_tcp_listeners(self.port, host=self.host)
                break
            except OSError as exc:
                log.error(
                    "operator console cannot listen on %s:%d (%s); retrying in %.0f s",
                    self.host,
                    self.port,
                    exc.strerror or type(exc).__name__,
                    BIND_RETRY,
                )
                if not started:
                    started = True
                    task_status.started()
                await trio.sleep(BIND_RETRY)
        self.port = listeners[0].socket.getsockname()[1]
        log.info("operator console on http://%s:%d/", self.host, self.port)
        if not started:
            task_status.started()
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            self._limiter.acquire_nowait()
        except trio.WouldBlock:
            self.requests_refused += 1
            await stream.aclose()
            return
        try:
            await self._serve(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception as exc:  # one bad connection must never take the node down
            log.warning("console connection failed: %s", type(exc).__name__)
        finally:
            self._limiter.release()
            await stream.aclose()

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            with trio.move_on_after(IDLE_TIMEOUT) as idle:
                try:
                    request = await self._read_request(conn, stream)
                except h11.RemoteProtocolError as exc:
                    self.requests_refused += 1
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        resp = _html(exc.error_status_hint, "bad request")
                        await self._send(conn, stream, resp, head_only=False)
                    return
            if idle.cancelled_caught or request is None:
                return
            with trio.move_on_after(REQUEST_TIMEOUT):
                resp = await self._respond(request)
                await self._send(conn, stream, resp, head_only=request.method == b"HEAD")
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _read_request(
        self, conn: h11.Connection, stream: trio.SocketStream
    ) -> h11.Request | None:
        request: h11.Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(MAX_HEAD_BYTES)
                conn.receive_data(data)  # b"" marks EOF
                if not data and request is None:
                    return None
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                raise h11.RemoteProtocolError("requests carry no body", error_status_hint=413)
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, (h11.ConnectionClosed, h11.PAUSED)):
                return None

    async def _send(
        self, conn: h11.Connection, stream: trio.SocketStream, resp: Response, *, head_only: bool
    ) -> None:
        headers = [
            (b"content-type", resp.content_type.encode()),
            (b"content-length", str(len(resp.body)).encode()),
            *_SECURITY_HEADERS,
            *resp.headers,
        ]
        reason = HTTPStatus(resp.status).phrase.encode()
        response = h11.Response(status_code=resp.status, headers=headers, reason=reason)
        out = conn.send(response) or b""
        if not head_only:
            out += conn.send(h11.Data(data=resp.body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(out)

    async def _respond(self, request: h11.Request) -> Response:
        node = self.node
        if request.method not in (b"GET", b"HEAD"):
            self.requests_refused += 1
            resp = _html(405, _render.message(node, "method not allowed", "GET or HEAD only"))
            return Response(resp.status, resp.content_type, resp.body, ((b"allow", b"GET, HEAD"),))
        headers = {k.lower(): v for k, v in request.headers}
        if headers.get(b"host") not in self.allowed_hosts:
            self.requests_refused += 1
            return _html(403, _render.message(node, "forbidden", "unexpected Host header"))
        try:
            target = urlsplit(request.target.decode("ascii"))
            params = {k: v[0] for k, v in parse_qs(target.query, max_num_fields=16).items()}
        except (UnicodeDecodeError, ValueError):
            self.requests_refused += 1
            return _html(400, _render.message(node, "bad request", "malformed address"))
        query = Query(target.path, params)
        if "token" in params:
            if not token_matches(params["token"], self._token):
                self.requests_refused += 1
                return _html(401, _render.message(node, "unauthorized", "wrong token"))
            cookie = f"{COOKIE}={self._cookie}; HttpOnly; SameSite=Strict; Path=/"
            return Response(
                303,
                "text/plain",
                b"signed in\n",
                ((b"location", target.path.encode() or b"/"), (b"set-cookie", cookie.encode())),
            )
        if not self._authorized(headers):
            self.requests_refused += 1
            hint = (
                "Send 'Authorization: Bearer <token>' or open /?token=<token> once; the token is "
                "in the node's data directory (console.token)."
            )
            resp = _html(401, _render.message(node, "unauthorized", hint))
            return Response(401, resp.content_type, resp.body, ((b"www-authenticate", b"Bearer"),))
        route = self._routes.get(query.path)
        if route is None:
            return _html(404, _render.message(node, "not found", query.path))
        self.requests_served += 1
        try:
            return await route(query)
        except Exception:
            log.exception("console page failed path=%s", query.path)
            return _html(500, _render.message(node, "error", "the page failed; see the node log"))

    def _authorized(self, headers: Mapping[bytes, bytes]) -> bool:
        """The bearer token, or the sign-in cookie (derived from it, so the browser never
        holds the token that also opens /metrics to scripts)."""
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer ":
            return token_matches(auth[7:].strip().decode("latin-1"), self._token)
        raw = headers.get(b"cookie")
        if not raw:
            return False
        try:
            morsel = SimpleCookie(raw.decode("latin-1")).get(COOKIE)
        except CookieError:
            return False
        return morsel is not None and token_matches(morsel.value, self._cookie)

    # -- routes ------------------------------------------------------------------------------------
    async def _overview(self, query: Query) -> Response:
        return _html(200, _render.overview(self.source.status()))

    async def _keys(self, query: Query) -> Response:
        return _html(200, _render.keys(self.node, self.source.key_summaries()))

    async def _dkg(self, query: Query) -> Response:
        return _html(200, _render.dkg_sessions(self.node, self.source.dkg_summaries()))

    def _audit_page(self, query: Query) -> tuple[dict[str, Any], int, int]:
        start = query.int_param("from", 0, 0, 10**12)
        limit = query.int_param("limit", 100, 1, 1000)
        trail = self.source.audit({"from": start, "limit": limit})
        try:
            verify_chain(entry_from_json(e) for e in trail["entries"])
            trail["page_check"] = "ok" if trail["entries"] else ""
        except (ValueError, KeyError, TypeError) as exc:
            trail["page_check"] = str(exc)
        return trail, start, limit

    async def _audit(self, query: Query) -> Response:
        trail, start, limit = self._audit_page(query)
        return _html(200, _render.audit(self.node, trail, start, limit))

    async def _audit_verify(self, query: Query) -> Response:
        verification = await self.source.verify_audit()
        trail, start, limit = self._audit_page(query)
        return _html(200, _render.audit(self.node, trail, start, limit, verification))

    async def _metrics(self, query: Query) -> Response:
        text = _render.metrics(self.source.status(), self.source.chain_id)
        return Response(200, "text/plain; version=0.0.4; charset=utf-8", text.encode())

    async def _api_status(self, query: Query) -> Response:
        window = float(query.int_param("window", 60, 1, 3600))
        return _json(self.source.status(window))

    async def _api_keys(self, query: Query) -> Response:
        return _json(self.source.key_summaries())

    async def _api_dkg(self, query: Query) -> Response:
        return _json(self.source.dkg_summaries())

    async def _api_events(self, query: Query) -> Response:
        since = query.int_param("since_ns", 0, 0, 2**63 - 1)
        limit = query.int_param("limit", EVENTS_LIMIT, 1, EVENTS_LIMIT)
        return _json(self.source.events(since, limit))

    async def _api_audit(self, query: Query) -> Response:
        if query.params.get("verify") == "1":
            return _json(await self.source.verify_audit())
        trail, _, _ = self._audit_page(query)
        return _json(trail)
