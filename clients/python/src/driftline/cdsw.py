"""The ``cdsw`` module's model-metrics functions, for code written against Cloudera's ``cdsw``."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from . import _client, metrics_v1
from ._config import DEV_MODEL_BUILD_CRN, DEV_MODEL_CRN, DEV_MODEL_DEPLOYMENT_CRN
from .metrics_v1 import (
    read_aggregate_metrics,
    read_metrics,
    read_metrics_arrow,
    track_aggregate_metrics,
    track_delayed_metrics,
    track_metric,
)
from .models_v1 import cml_model, model

F = TypeVar("F", bound=Callable[..., Any])

#: The model CRN predictions get in development mode when none is configured.
dev_model_crn: str = DEV_MODEL_CRN
#: The model build CRN predictions get in development mode when none is configured.
dev_model_build_crn: str = DEV_MODEL_BUILD_CRN
#: The deployment CRN predictions get in development mode when none is configured.
dev_model_deployment_crn: str = DEV_MODEL_DEPLOYMENT_CRN


def model_metrics(func: F) -> F:
    """The older decorator name: the same as ``@models.cml_model(metrics=True)``."""
    return _client.instrument(func)


__all__ = [
    "dev_model_crn",
    "dev_model_build_crn",
    "dev_model_deployment_crn",
    "model_metrics",
    "cml_model",
    "model",
    *metrics_v1.__all__,
]
