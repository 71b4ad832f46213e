"""HTTP calls to the driftline API, with urllib from the standard library only."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterator, Mapping, Optional

from .errors import DriftlineError, ServerUnavailableError

_USER_AGENT = "driftline-python/0.1"
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


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
    problem: Optional[Dict[str, Any]] = None
    try:
        parsed = json.loads(raw) if raw else None
        if isinstance(parsed, dict):
            problem = parsed
    except ValueError:
        problem = None
    detail = problem.get("detail") if problem else (raw.decode("utf-8", "replace").strip() or None)
    title = problem.get("title") if problem else err.reason
    message = f"{what}: HTTP {err.code} {title}"
    if detail:
        message += f": {detail}"
    cls = ServerUnavailableError if err.code in RETRYABLE_STATUS else DriftlineError
    return cls(message, status=err.code, title=str(title) if title else None, detail=detail, problem=problem)


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
    try:
        report = json.loads(raw)
    except ValueError:
        raise DriftlineError(f"{what}: the server's answer is not JSON: {raw[:200]!r}") from None
    return report if isinstance(report, dict) else {}


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
                raise DriftlineError(
                    f"{what}: the answer was cut off before its end ({err}); the read failed on the "
                    "server (see its log) or the connection broke: read the window again"
                ) from None
            if not line:
                return
            line = line.strip()
            if line:
                yield line
    finally:
        resp.close()


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
