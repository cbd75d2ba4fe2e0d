"""Requests captured from confluent-kafka (librdkafka) and kafka-python, decoded field by field.

Each fixture is one frame a real client sent to the fake broker in ``scripts/capture_golden.py``.
Decoding it and encoding the result again must give back the very same bytes, which shows that
every field was read at its true width and position; the per-API checks below then pin what the
clients actually put in those fields, the facts a broker's handlers have to cope with.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from kafkacompat.protocol import APIS, DecodeError
from kafkacompat.protocol.framing import decode_request, encode_request, request_header_version
from kafkacompat.protocol.messages.consumer_protocol_assignment import ConsumerProtocolAssignment
from kafkacompat.protocol.messages.consumer_protocol_subscription import (
    ConsumerProtocolSubscription,
)
from kafkacompat.protocol.messages.leave_group_request import MemberIdentity
from kafkacompat.protocol.messages.metadata_request import MetadataRequestTopic
from kafkacompat.protocol.messages.request_header import RequestHeader
from kafkacompat.protocol.primitives import ZERO_UUID
from tests.golden import produced
from tests.golden.golden_files import CLIENTS, FIXTURES, MANIFEST, Golden, client_versions, goldens

ALL = goldens()
GROUPS = {"confluent": produced.CONFLUENT_GROUP, "kafka_python": produced.KAFKA_PYTHON_GROUP}
# librdkafka defaults to read_committed; kafka-python, like the Java client, to read_uncommitted.
ISOLATION = {"confluent": 1, "kafka_python": 0}


def by_id(items: list[Golden]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("golden", items, ids=[g.id for g in items])


# -- every fixture -----------------------------------------------------------------------------


def test_the_required_fixtures_are_there() -> None:
    names = {g.path.name for g in ALL}
    for client in CLIENTS:
        for api in ("api_versions", "metadata", "fetch", "join_group"):
            assert any(g.api == api and g.client == client for g in ALL), (api, client)
        for codec in produced.CODECS:
            assert any(g.api == "produce" and g.client == client and g.codec == codec for g in ALL)
    assert any(g.api == "init_producer_id" and g.client == "kafka_python" for g in ALL)
    assert sorted(names) == MANIFEST["fixtures"]
    assert (FIXTURES / "README.md").is_file()


@by_id(ALL)
def test_header_matches_the_file_name(golden: Golden) -> None:
    header, _ = golden.decode()
    assert APIS[header.request_api_key].request_module.endswith(f".{golden.api}_request")
    assert header.request_api_version == golden.version
    assert header.correlation_id > 0
    if golden.client == "confluent":
        assert header.client_id == "rdkafka"
        return
    # kafka-python 3 numbers its producers per process (kafka-python-producer-1, -2, ...) while
    # a consumer's default client id is kafka-python-<version>.
    assert header.client_id is not None
    from_producer = re.fullmatch(r"kafka-python-producer-\d+", header.client_id) is not None
    from_consumer = header.client_id == f"kafka-python-{client_versions()['kafka-python']}"
    if golden.api in ("produce", "init_producer_id"):
        assert from_producer
    elif golden.api in ("api_versions", "metadata"):
        assert from_producer or from_consumer
    else:
        assert from_consumer


@by_id(ALL)
def test_reencoding_gives_back_the_exact_bytes(golden: Golden) -> None:
    header, body = golden.decode()
    assert encode_request(header, body)[4:] == golden.data
    header_version = request_header_version(header.request_api_key, header.request_api_version)
    header_bytes = header.encode(header_version)
    assert header_bytes + body.encode(golden.version) == golden.data
    # The header alone decodes to the same thing, so the body starts where we think it does.
    assert RequestHeader.decode(golden.data[: len(header_bytes)], header_version) == header


@by_id(ALL)
def test_every_truncation_and_trailing_byte_is_a_decode_error(golden: Golden) -> None:
    for end in range(len(golden.data)):
        with pytest.raises(DecodeError):
            decode_request(golden.data[:end])
    with pytest.raises(DecodeError):
        decode_request(golden.data + b"\x00")


@by_id(ALL)
def test_fields_are_what_the_client_sent(golden: Golden) -> None:
    check = CHECKS.get(golden.api)
    assert check is not None, f"no field checks for {golden.api}: add some"
    _, body = golden.decode()
    check(golden, body)


# -- per API ------------------------------------------------------------------------------------


def check_api_versions(golden: Golden, body: Any) -> None:
    versions = client_versions()
    if golden.client == "confluent":
        assert golden.version == 3
        assert body.client_software_name == "confluent-kafka-python"
        expected = f"{versions['confluent-kafka']}-rdkafka-{versions['librdkafka']}"
        assert body.client_software_version == expected
    else:
        assert golden.version == 4
        assert body.client_software_name == "kafka-python"
        assert body.client_software_version == versions["kafka-python"]


def check_metadata(golden: Golden, body: Any) -> None:
    assert golden.version == 12
    if golden.client == "confluent":
        assert body.topics == [MetadataRequestTopic(topic_id=ZERO_UUID, name=produced.TOPIC)]
    else:
        # kafka-python bootstraps with an empty list (brokers only), which is not null (all).
        assert body.topics is not None
        assert body.topics == []
    assert body.allow_auto_topic_creation is True
    assert body.include_cluster_authorized_operations is False
    assert body.include_topic_authorized_operations is False


def check_produce(golden: Golden, body: Any) -> None:
    assert golden.version == {"confluent": 10, "kafka_python": 9}[golden.client]
    assert body.transactional_id is None
    assert body.acks == -1  # librdkafka's default; kafka-python's because idempotence is on
    assert body.timeout_ms == 30_000
    (topic,) = body.topic_data
    assert topic.name == produced.TOPIC
    assert [p.index for p in topic.partition_data] == [produced.PARTITION]
    assert len(topic.partition_data[0].records) > 61  # a whole batch; contents: test_golden_records


def check_fetch(golden: Golden, body: Any) -> None:
    assert body.replica_id == -1
    assert body.max_wait_ms == 500
    assert body.min_bytes == 1
    assert body.max_bytes == 52_428_800
    assert body.isolation_level == ISOLATION[golden.client]
    assert body.session_id == 0
    assert body.rack_id == ""
    assert body.forgotten_topics_data == []
    (topic,) = body.topics
    if golden.client == "confluent":
        assert golden.version == 16
        assert body.session_epoch == -1  # librdkafka does not use fetch sessions (KIP-227)
        assert (topic.topic, topic.topic_id) == ("", produced.TOPIC_ID)  # v13+: ids only
    else:
        assert golden.version == 12
        assert body.session_epoch == 0  # asks for a new fetch session
        assert (topic.topic, topic.topic_id) == (produced.TOPIC, ZERO_UUID)
    partitions = [p.partition for p in topic.partitions]
    assert partitions
    assert set(partitions) <= set(range(produced.PARTITION_COUNT))
    for p in topic.partitions:
        assert p.fetch_offset == 0  # the first fetch starts at the earliest offset
        assert p.current_leader_epoch == 0  # the leader epoch our Metadata answer gave
        assert p.partition_max_bytes == 1_048_576
        assert (p.last_fetched_epoch, p.log_start_offset) == (-1, -1)


def _subscription(metadata: bytes) -> tuple[int, ConsumerProtocolSubscription]:
    # The consumer protocol's payloads start with their own int16 version.
    version = int.from_bytes(metadata[:2], "big", signed=True)
    subscription = ConsumerProtocolSubscription.decode(metadata[2:], version)
    assert metadata[:2] + subscription.encode(version) == metadata
    return version, subscription


def check_join_group(golden: Golden, body: Any) -> None:
    assert golden.version == {"confluent": 5, "kafka_python": 7}[golden.client]
    assert body.group_id == GROUPS[golden.client]
    assert body.session_timeout_ms == 45_000
    assert body.rebalance_timeout_ms == 300_000
    assert body.member_id == ""
    assert body.group_instance_id is None
    assert body.protocol_type == "consumer"
    assert [p.name for p in body.protocols] == ["range", "roundrobin"]
    for protocol in body.protocols:
        version, subscription = _subscription(protocol.metadata)
        assert version == {"confluent": 3, "kafka_python": 0}[golden.client]
        assert subscription.topics == [produced.TOPIC]
        assert bytes(subscription.user_data or b"") == b""
        assert subscription.owned_partitions == []


def check_sync_group(golden: Golden, body: Any) -> None:
    assert golden.version == {"confluent": 3, "kafka_python": 5}[golden.client]
    assert body.group_id == GROUPS[golden.client]
    assert body.generation_id >= 1
    assert body.group_instance_id is None
    if golden.client == "kafka_python":
        assert (body.protocol_type, body.protocol_name) == ("consumer", "range")
    (assignment,) = body.assignments
    assert assignment.member_id == body.member_id  # the leader assigns to itself
    version = int.from_bytes(assignment.assignment[:2], "big", signed=True)
    assert version == 0
    decoded = ConsumerProtocolAssignment.decode(assignment.assignment[2:], version)
    ((topic, partitions),) = [(t.topic, t.partitions) for t in decoded.assigned_partitions]
    assert (topic, partitions) == (produced.TOPIC, list(range(produced.PARTITION_COUNT)))


def check_heartbeat(golden: Golden, body: Any) -> None:
    assert golden.version == 3
    assert body.group_id == GROUPS[golden.client]
    assert body.generation_id >= 1
    assert body.member_id != ""
    assert body.group_instance_id is None


def check_find_coordinator(golden: Golden, body: Any) -> None:
    group = GROUPS[golden.client]
    assert body.key_type == 0  # a group, not a transactional id
    if golden.client == "confluent":
        assert golden.version == 2
        assert (body.key, body.coordinator_keys) == (group, [])
    else:
        assert golden.version == 6  # KIP-699: batched keys
        assert (body.key, body.coordinator_keys) == ("", [group])


def check_offset_fetch(golden: Golden, body: Any) -> None:
    assert golden.version == {"confluent": 9, "kafka_python": 8}[golden.client]
    assert (body.group_id, body.topics) == ("", [])  # v8+ moved both into groups
    assert body.require_stable is (golden.client == "confluent")  # follows isolation level
    (group,) = body.groups
    assert group.group_id == GROUPS[golden.client]
    assert (group.member_id, group.member_epoch) == (None, -1)
    assert [(t.name, sorted(t.partition_indexes)) for t in group.topics or ()] == [
        (produced.TOPIC, list(range(produced.PARTITION_COUNT)))
    ]


def check_offset_commit(golden: Golden, body: Any) -> None:
    assert golden.version == {"confluent": 9, "kafka_python": 8}[golden.client]
    assert body.group_id == GROUPS[golden.client]
    assert body.generation_id_or_member_epoch >= 1
    assert body.member_id != ""
    assert body.group_instance_id is None
    assert body.retention_time_ms == -1
    (topic,) = body.topics
    assert topic.name == produced.TOPIC
    committed = {p.partition_index: p for p in topic.partitions}
    # librdkafka commits only partitions it consumed from; kafka-python all assigned ones.
    expected = {produced.PARTITION} if golden.client == "confluent" else {0, 1, 2}
    assert set(committed) == expected
    for index, p in committed.items():
        if index == produced.PARTITION:
            # The next offset to read, and the leader epoch of the last batch consumed.
            assert p.committed_offset == MANIFEST["records_in_log"]
            assert p.committed_leader_epoch == 0
        else:
            assert (p.committed_offset, p.committed_leader_epoch) == (0, -1)
        assert p.commit_timestamp == -1
        assert p.committed_metadata == ""


def check_list_offsets(golden: Golden, body: Any) -> None:
    assert golden.version == {"confluent": 7, "kafka_python": 10}[golden.client]
    assert body.replica_id == -1
    assert body.isolation_level == ISOLATION[golden.client]
    (topic,) = body.topics
    assert topic.name == produced.TOPIC
    indexes = [p.partition_index for p in topic.partitions]
    if golden.client == "kafka_python":
        assert sorted(indexes) == [0, 1, 2]  # in no particular order
    else:
        assert indexes  # librdkafka asks per partition as it starts each: any subset
        assert set(indexes) <= {0, 1, 2}
    for p in topic.partitions:
        assert p.timestamp == -2  # EARLIEST, from auto.offset.reset
        # librdkafka passes the leader epoch from Metadata on (KIP-320); kafka-python does not.
        assert p.current_leader_epoch == (0 if golden.client == "confluent" else -1)


def check_leave_group(golden: Golden, body: Any) -> None:
    assert body.group_id == GROUPS[golden.client]
    if golden.client == "confluent":
        assert golden.version == 1
        assert body.member_id != ""
        assert body.members == []
    else:
        assert golden.version == 5  # KIP-345 batch form, no reason given
        assert body.member_id == ""
        (member,) = body.members
        assert member.member_id != ""
        assert member == MemberIdentity(member_id=member.member_id)


def check_init_producer_id(golden: Golden, body: Any) -> None:
    assert golden.version == 4
    assert body.transactional_id is None
    assert (body.producer_id, body.producer_epoch) == (-1, -1)
    # Not transactional, so the timeout means nothing; the clients disagree on what to send.
    assert body.transaction_timeout_ms == {"confluent": -1, "kafka_python": 0}[golden.client]


def check_get_telemetry_subscriptions(golden: Golden, body: Any) -> None:
    assert golden.version == 0
    assert body.client_instance_id == ZERO_UUID  # KIP-714: the first request asks for an id


CHECKS: dict[str, Callable[[Golden, Any], None]] = {
    "api_versions": check_api_versions,
    "metadata": check_metadata,
    "produce": check_produce,
    "fetch": check_fetch,
    "join_group": check_join_group,
    "sync_group": check_sync_group,
    "heartbeat": check_heartbeat,
    "find_coordinator": check_find_coordinator,
    "offset_fetch": check_offset_fetch,
    "offset_commit": check_offset_commit,
    "list_offsets": check_list_offsets,
    "leave_group": check_leave_group,
    "init_producer_id": check_init_producer_id,
    "get_telemetry_subscriptions": check_get_telemetry_subscriptions,
}
