"""Dynamic broker configs (KIP-226, Kafka's ``DynamicBrokerConfig``)."""

from __future__ import annotations

from typing import Final

DYNAMIC_BROKER_CONFIGS: Final = "__kafkacompat_dynamic_broker_configs.properties"
"""Broker configs set with AlterConfigs (Kafka keeps them in its metadata log), in the data
directory."""
