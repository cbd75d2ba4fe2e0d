"""``queued.max.request.bytes`` (KIP-72): Kafka's type, default, cross-check and read-only-ness."""

from __future__ import annotations

from pathlib import Path

import pytest

from kafkacompat.config import BrokerConfig
from kafkacompat.errors import ErrorCode
from kafkacompat.protocol.messages import incremental_alter_configs_request as incremental
from kafkacompat.protocol.messages.describe_configs_request import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
)
from kafkacompat.storage.config import ConfigType, InvalidConfigError
from tests.handlers.helpers import call, running_broker

BROKER = 4


def test_default_is_unbounded() -> None:
    assert BrokerConfig().get("queued.max.request.bytes") == -1


@pytest.mark.parametrize(
    ("queued", "request_max"),
    [("-1", "104857600"), ("0", "104857600"), ("104857600", "104857600"), ("8388608", "1048576")],
)
def test_accepted(queued: str, request_max: str) -> None:
    config = BrokerConfig(
        {"queued.max.request.bytes": queued, "socket.request.max.bytes": request_max}
    )
    assert config.get("queued.max.request.bytes") == int(queued)


def test_a_pool_smaller_than_one_request_is_refused() -> None:
    # KafkaConfig.validateValues: a bounded pool must hold the largest request.
    with pytest.raises(
        InvalidConfigError, match=r"must be larger or equal to socket\.request\.max\.bytes"
    ):
        BrokerConfig({"queued.max.request.bytes": "104857599"})
    with pytest.raises(InvalidConfigError, match=r"queued\.max\.request\.bytes"):
        BrokerConfig({"queued.max.request.bytes": "lots"})
    # A LONG: more than an int holds is fine.
    assert BrokerConfig({"queued.max.request.bytes": str(1 << 40)}).get(
        "queued.max.request.bytes"
    ) == (1 << 40)


def test_described_read_only_and_not_alterable(tmp_path: Path) -> None:
    with running_broker(tmp_path, queued_max_request_bytes="209715200") as broker:
        node = str(broker.node_id)
        request = DescribeConfigsRequest(
            resources=[
                DescribeConfigsResource(
                    resource_type=BROKER,
                    resource_name=node,
                    configuration_keys=["queued.max.request.bytes"],
                )
            ],
            include_synonyms=False,
            include_documentation=False,
        )
        (result,) = call(broker, request, 4).results
        [row] = result.configs
        assert (row.name, row.value, row.read_only) == (
            "queued.max.request.bytes",
            "209715200",
            True,
        )
        assert row.config_type == ConfigType.LONG
        alter = incremental.IncrementalAlterConfigsRequest(
            resources=[
                incremental.AlterConfigsResource(
                    resource_type=BROKER,
                    resource_name=node,
                    configs=[
                        incremental.AlterableConfig(
                            name="queued.max.request.bytes", config_operation=0, value="-1"
                        )
                    ],
                )
            ]
        )
        (altered,) = call(broker, alter, 1).responses
        assert (altered.error_code, altered.error_message) == (
            ErrorCode.INVALID_REQUEST,
            "Cannot update these configs dynamically: Set(queued.max.request.bytes)",
        )
