"""The predict-function decorator, as Cloudera AI's ``cml.models_v1`` names it."""

from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar, Union, overload

from . import _client

F = TypeVar("F", bound=Callable[..., Any])


@overload
def cml_model(func: F) -> F: ...


@overload
def cml_model(func: None = None, *, metrics: bool = False) -> Callable[[F], F]: ...


def cml_model(func: Optional[F] = None, *, metrics: bool = False) -> Union[F, Callable[[F], F]]:
    """Decorate a predict function.

    With ``metrics=True`` every call is one prediction: it gets a new UUID, ``track_metric``
    inside it attaches values to it, and the call returns ``{"uuid": ..., "prediction": ...}``.
    When the call returns, the prediction (start and end time, the tracked metrics, the input and
    output sizes under ``"_driftline"``) is queued for the server, never waiting on the network.
    An exception is recorded under ``"_driftline"`` (``error.type``, ``error.message``) and
    re-raised unchanged. Without ``metrics=True`` the function is returned as it is.
    """

    def decorate(f: F) -> F:
        return _client.instrument(f) if metrics else f

    if func is not None:
        return decorate(func)
    return decorate


def model(func: Optional[F] = None, *, metrics: bool = False) -> Union[F, Callable[[F], F]]:
    """The same decorator as :func:`cml_model`, under driftline's own name."""
    return cml_model(func, metrics=metrics)  # type: ignore[call-overload]


__all__ = ["cml_model", "model"]
