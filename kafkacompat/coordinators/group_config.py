"""The group coordinator's settings: Kafka's ``group.*`` and ``offsets.*``, with its defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from kafkacompat.config import BrokerConfig

OFFSET_METADATA_MAX_BYTES: Final = 4096
"""Kafka's offset.metadata.max.bytes default (not a setting here yet)."""


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """The group.* and offsets.* settings, with Kafka's defaults."""

    min_session_timeout_ms: int = 6_000
    max_session_timeout_ms: int = 1_800_000
    initial_rebalance_delay_ms: int = 3_000
    max_size: int = 2**31 - 1
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000
    offsets_retention_check_interval_ms: int = 600_000
    offset_metadata_max_bytes: int = OFFSET_METADATA_MAX_BYTES

    @classmethod
    def from_broker_config(cls, config: BrokerConfig) -> GroupConfig:
        return cls(
            min_session_timeout_ms=config.get("group.min.session.timeout.ms"),
            max_session_timeout_ms=config.get("group.max.session.timeout.ms"),
            initial_rebalance_delay_ms=config.get("group.initial.rebalance.delay.ms"),
            max_size=config.get("group.max.size"),
            offsets_retention_ms=config.get("offsets.retention.minutes") * 60_000,
            offsets_retention_check_interval_ms=config.get("offsets.retention.check.interval.ms"),
        )
