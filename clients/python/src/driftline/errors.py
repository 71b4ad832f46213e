"""The errors the client raises to its caller (never from inside a decorated predict function)."""

from __future__ import annotations

from typing import Any, Mapping, Optional


class DriftlineError(Exception):
    """A call to the driftline server failed.

    ``status``, ``title`` and ``detail`` carry the server's ``application/problem+json`` answer
    when there was one; ``detail`` says what to do next.
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        title: Optional[str] = None,
        detail: Optional[str] = None,
        problem: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.detail = detail
        self.problem = dict(problem) if problem else None


class ServerUnavailableError(DriftlineError):
    """The server could not be reached, or answered that it cannot serve now (5xx, 408, 429)."""


class DevServerError(DriftlineError):
    """The local development server could not be found, started or reached."""


class NotSupportedError(DriftlineError, NotImplementedError):
    """The server does not offer this yet (for example SQL queries)."""
