"""Where events go and who sends them: from the environment, or from ``driftline.init(...)``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Optional

#: CRNs used in development mode when the replica's identity is not configured.
DEV_MODEL_CRN = "crn:driftline:dev:model/dev"
DEV_MODEL_BUILD_CRN = "crn:driftline:dev:build/dev"
DEV_MODEL_DEPLOYMENT_CRN = "crn:driftline:dev:deployment/dev"
#: The topic `driftline ingest` consumes unless told otherwise (its `--topic`).
DEFAULT_KAFKA_TOPIC = "driftline.events"


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name, "").strip()
    return value or None


def _env_number(name: str, default: float) -> float:
    value = _env(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number; set it to a number or unset it") from None


def _env_interval(name: str) -> Optional[float]:
    """Seconds between two samples, or None when unset or 0 (off)."""
    value = _env_number(name, 0.0)
    if not 0 <= value < float("inf"):
        raise ValueError(f"{name}={_env(name)!r} must be a number of seconds; set 0 or unset it for off")
    return value or None


def kafka_options(text: Optional[str], name: str = "DRIFTLINE_KAFKA_OPTIONS") -> Dict[str, str]:
    """librdkafka settings written as ``KEY=VALUE,KEY=VALUE`` (as `driftline ingest` reads them)."""
    options: Dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{name}: {item.strip()!r} is not KEY=VALUE, e.g. security.protocol=ssl")
        options[key.strip()] = value.strip()
    return options


@dataclass
class Config:
    """The client's settings. Events go to Kafka when ``kafka_brokers`` is set, else to ``url``;
    neither set means development mode on the embedded server."""

    url: Optional[str] = None
    api_key: Optional[str] = None
    model_crn: Optional[str] = None
    model_build_crn: Optional[str] = None
    model_deployment_crn: Optional[str] = None
    dev: bool = False
    queue_size: int = 100_000
    batch_size: int = 1_000
    linger_ms: float = 200.0
    request_timeout_s: float = 30.0
    max_backoff_s: float = 5.0
    exit_flush_timeout_s: float = 10.0
    #: The name of this process in ``replica_stats`` events (default: ``<hostname>:<pid>``).
    replica_id: Optional[str] = None
    #: Seconds between the replica figures the sender thread sends by itself; None: never.
    replica_stats_every_s: Optional[float] = None
    #: Kafka bootstrap servers (``host:port[,host:port…]``): events are produced there.
    kafka_brokers: Optional[str] = None
    kafka_topic: str = DEFAULT_KAFKA_TOPIC
    #: Extra librdkafka settings of the producer (TLS, SASL, ...); they win over the client's.
    kafka_options: Dict[str, str] = field(default_factory=dict)

    @property
    def uses_dev_server(self) -> bool:
        """Whether events go to the local development server started by the client."""
        return self.url is None and self.kafka_brokers is None

    @property
    def uses_kafka(self) -> bool:
        """Whether events are produced to Kafka rather than posted."""
        return self.kafka_brokers is not None

    @classmethod
    def from_env(cls) -> "Config":
        """Settings from ``DRIFTLINE_*`` environment variables, with defaults for the rest."""
        return cls(
            url=_env("DRIFTLINE_URL"),
            api_key=_env("DRIFTLINE_API_KEY"),
            model_crn=_env("DRIFTLINE_MODEL_CRN"),
            model_build_crn=_env("DRIFTLINE_MODEL_BUILD_CRN"),
            model_deployment_crn=_env("DRIFTLINE_MODEL_DEPLOYMENT_CRN"),
            queue_size=int(_env_number("DRIFTLINE_QUEUE_SIZE", 100_000)),
            batch_size=int(_env_number("DRIFTLINE_BATCH_SIZE", 1_000)),
            linger_ms=_env_number("DRIFTLINE_LINGER_MS", 200.0),
            replica_id=_env("DRIFTLINE_REPLICA_ID"),
            replica_stats_every_s=_env_interval("DRIFTLINE_REPLICA_STATS_EVERY_S"),
            kafka_brokers=_env("DRIFTLINE_KAFKA_BROKERS"),
            kafka_topic=_env("DRIFTLINE_KAFKA_TOPIC") or DEFAULT_KAFKA_TOPIC,
            kafka_options=kafka_options(_env("DRIFTLINE_KAFKA_OPTIONS")),
        )
