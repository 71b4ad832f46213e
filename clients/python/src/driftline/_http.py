"""HTTP calls to the driftline API, with urllib from the standard library only."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

from .errors import DriftlineError, ServerUnavailableError

_USER_AGENT = "driftline-python/0.1"
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: How a kept-alive connection the server has closed fails on the next request.
_STALE_CONNECTION = (ConnectionError, http.client.BadStatusLine)


def _headers(api_key: Optional[str], content_type: Optional[str] = None) -> Dict[str, str]:
    headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if content_type:
        headers["Content-Type"] = content_type
    return headers


def _error_from_http(err: urllib.error.HTTPError, what: str) -> DriftlineError:
    """Turn an HTTP error answer into an exception carrying the server's problem+json detail."""
    try:
        raw = err.read()
    except Exception:  # the body itself may be cut off
        raw = b""
    return _error_from_answer(err.code, err.reason, raw, what)


def _error_from_answer(code: int, reason: Any, raw: bytes, what: str) -> DriftlineError:
    """An exception for an HTTP error answer, carrying the server's problem+json detail."""
    problem: Optional[Dict[str, Any]] = None
    try:
        parsed = json.loads(raw) if raw else None
        if isinstance(parsed, dict):
            problem = parsed
    except ValueError:
        problem = None
    detail = problem.get("detail") if problem else (raw.decode("utf-8", "replace").strip() or None)
    title = problem.get("title") if problem else reason
    message = f"{what}: HTTP {code} {title}"
    if detail:
        message += f": {detail}"
    cls = ServerUnavailableError if code in RETRYABLE_STATUS else DriftlineError
    return cls(message, status=code, title=str(title) if title else None, detail=detail, problem=problem)


def _open(req: urllib.request.Request, timeout: float, what: str) -> http.client.HTTPResponse:
    try:
        return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (the URL is configured)
    except urllib.error.HTTPError as err:
        raise _error_from_http(err, what) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, socket.timeout) as err:
        reason = getattr(err, "reason", err)
        raise ServerUnavailableError(
            f"{what}: cannot reach the driftline server at {req.full_url} ({reason}); "
            "check DRIFTLINE_URL and that `driftline serve` is running"
        ) from None


def post_events(base_url: str, api_key: Optional[str], body: bytes, timeout: float) -> Dict[str, Any]:
    """POST a JSON array of events to ``/api/v1/events`` and return the server's report."""
    req = urllib.request.Request(
        base_url.rstrip("/") + "/api/v1/events",
        data=body,
        method="POST",
        headers=_headers(api_key, "application/json"),
    )
    what = "sending events"
    with _open(req, timeout, what) as resp:
        try:
            raw = resp.read()
        except (OSError, http.client.HTTPException) as err:
            raise ServerUnavailableError(f"{what}: the answer was cut off ({err})") from None
    return _report(raw, what)


def _report(raw: bytes, what: str) -> Dict[str, Any]:
    try:
        report = json.loads(raw)
    except ValueError:
        raise DriftlineError(f"{what}: the server's answer is not JSON: {raw[:200]!r}") from None
    return report if isinstance(report, dict) else {}


class EventPoster:
    """POSTs batches of events to one server over one kept-alive connection.

    ``urlopen`` opens a connection per request and builds a handler chain each time; the sender
    thread posts batch after batch to the same server, so it keeps one ``http.client`` connection
    and opens a new one when the server closed it. Where ``urllib`` would send through a proxy
    (``http_proxy``, ``https_proxy``, ``no_proxy``), it posts with :func:`post_events` instead.
    One poster belongs to one thread.
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._conn: Optional[http.client.HTTPConnection] = None
        self._base_url: Optional[str] = None
        self._path = ""
        self._direct = True

    def post(self, base_url: str, api_key: Optional[str], body: bytes) -> Dict[str, Any]:
        """Like :func:`post_events`: the server's report, or the same exceptions."""
        if base_url != self._base_url:
            self.close()
            self._open(base_url)
        if not self._direct:
            return post_events(base_url, api_key, body, self._timeout)
        what = "sending events"
        headers = _headers(api_key, "application/json")
        # A kept-alive connection the server has meanwhile closed fails at once: try once more
        # on a new one. A new connection that fails means the server is away.
        for attempt in (0, 1):
            reused = self._conn is not None
            try:
                if self._conn is None:
                    self._conn = self._connect()
                self._conn.request("POST", self._path, body=body, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException) as err:
                self.close()
                if reused and attempt == 0 and isinstance(err, _STALE_CONNECTION):
                    continue
                raise ServerUnavailableError(
                    f"{what}: cannot reach the driftline server at {base_url.rstrip('/')}/api/v1/events ({err}); "
                    "check DRIFTLINE_URL and that `driftline serve` is running"
                ) from None
            if resp.will_close:
                self.close()
            if resp.status >= 300:
                raise _error_from_answer(resp.status, resp.reason, raw, what)
            return _report(raw, what)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def _open(self, base_url: str) -> None:
        parts = urllib.parse.urlsplit(base_url.rstrip("/") + "/api/v1/events")
        self._base_url = base_url
        self._path = parts.path + (("?" + parts.query) if parts.query else "")
        self._scheme, self._netloc = parts.scheme, parts.netloc
        proxies = urllib.request.getproxies()
        self._direct = parts.scheme in ("http", "https") and not (
            parts.scheme in proxies and not urllib.request.proxy_bypass(parts.hostname or "")
        ) and not parts.username

    def _connect(self) -> http.client.HTTPConnection:
        if self._scheme == "https":
            import ssl

            return http.client.HTTPSConnection(self._netloc, timeout=self._timeout, context=ssl.create_default_context())
        return http.client.HTTPConnection(self._netloc, timeout=self._timeout)


def post_for_bytes(
    base_url: str, api_key: Optional[str], path: str, body: bytes, accept: str, timeout: float
) -> Tuple[bytes, str]:
    """POST a JSON body and return the whole answer and its content type (``accept`` is sent
    as ``Accept``); error answers raise with the server's problem+json detail."""
    headers = _headers(api_key, "application/json")
    headers["Accept"] = accept
    req = urllib.request.Request(base_url.rstrip("/") + path, data=body, method="POST", headers=headers)
    what = f"POST {path}"
    with _open(req, timeout, what) as resp:
        try:
            return resp.read(), resp.headers.get("Content-Type", "")
        except (OSError, http.client.HTTPException) as err:
            raise ServerUnavailableError(f"{what}: the answer was cut off ({err})") from None


def get_json(base_url: str, api_key: Optional[str], path: str, params: Mapping[str, Any], timeout: float) -> Any:
    """GET a JSON answer."""
    url = _url(base_url, path, params)
    req = urllib.request.Request(url, headers=_headers(api_key))
    what = f"GET {path}"
    with _open(req, timeout, what) as resp:
        try:
            return json.loads(resp.read())
        except (OSError, http.client.HTTPException) as err:
            raise ServerUnavailableError(f"{what}: the answer was cut off ({err})") from None


def get_lines(base_url: str, api_key: Optional[str], path: str, params: Mapping[str, Any], timeout: float) -> Iterator[bytes]:
    """GET an NDJSON answer and yield its non-empty lines one by one, as they arrive."""
    url = _url(base_url, path, params)
    req = urllib.request.Request(url, headers=_headers(api_key))
    what = f"GET {path}"
    resp = _open(req, timeout, what)
    try:
        while True:
            try:
                line = resp.readline()
            except (OSError, http.client.HTTPException) as err:
                raise cut_off(what, err) from None
            if not line:
                return
            line = line.strip()
            if line:
                yield line
    finally:
        resp.close()


def open_get(
    base_url: str, api_key: Optional[str], path: str, params: Mapping[str, Any], accept: str, timeout: float
) -> http.client.HTTPResponse:
    """GET and return the open answer (``accept`` is sent as ``Accept``), for the caller to read
    as it arrives and to close; an error answer raises with the server's problem+json detail."""
    headers = _headers(api_key)
    headers["Accept"] = accept
    req = urllib.request.Request(_url(base_url, path, params), headers=headers)
    return _open(req, timeout, f"GET {path}")


def cut_off(what: str, reason: Any) -> DriftlineError:
    """The error of a streamed answer that ended before its end."""
    return DriftlineError(
        f"{what}: the answer was cut off before its end ({reason}); the read failed on the "
        "server (see its log) or the connection broke: read the window again"
    )


def ready(base_url: str, timeout: float = 1.0) -> bool:
    """Whether ``/readyz`` answers 200 (no key needed)."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + "/readyz", timeout=timeout) as resp:  # noqa: S310
            return resp.status == 200
    except Exception:
        return False


def _url(base_url: str, path: str, params: Mapping[str, Any]) -> str:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    return base_url.rstrip("/") + path + (("?" + query) if query else "")
