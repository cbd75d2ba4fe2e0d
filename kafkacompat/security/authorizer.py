"""The authorizer hook every handler asks before it acts (Kafka's ``Authorizer`` interface,
KIP-504).

A handler names the operation and the resource, as Kafka's ``KafkaApis`` does for the same
API (Produce: WRITE on each topic; Fetch: READ; CreateTopics: CREATE on the cluster or the
topic; ...), and answers the API's *_AUTHORIZATION_FAILED error where the authorizer says no.
The broker's authorizer today allows everything, which is what Kafka does with no
``authorizer.class.name``; an ACL authorizer is one more implementation of
:class:`Authorizer`, not a change to every handler.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, Protocol

from kafkacompat.security.session import Session


class AclOperation(IntEnum):
    """Kafka's ``AclOperation`` codes (also the bits of the ``*_authorized_operations``
    fields in Metadata and DescribeGroups responses)."""

    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14
    TWO_PHASE_COMMIT = 15


class ResourceType(IntEnum):
    """Kafka's ``ResourceType`` codes."""

    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


CLUSTER_NAME: Final = "kafka-cluster"
"""The one cluster resource's name, as Kafka spells it."""

# The operations each resource type supports: what ``*_authorized_operations`` report when
# everything is allowed (Kafka's AclEntry.supportedOperations).
SUPPORTED_OPERATIONS: Final[dict[ResourceType, tuple[AclOperation, ...]]] = {
    ResourceType.TOPIC: (
        AclOperation.READ,
        AclOperation.WRITE,
        AclOperation.CREATE,
        AclOperation.DELETE,
        AclOperation.ALTER,
        AclOperation.DESCRIBE,
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
    ),
    ResourceType.GROUP: (AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE),
    ResourceType.CLUSTER: (
        AclOperation.CREATE,
        AclOperation.ALTER,
        AclOperation.DESCRIBE,
        AclOperation.CLUSTER_ACTION,
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
        AclOperation.IDEMPOTENT_WRITE,
    ),
    ResourceType.TRANSACTIONAL_ID: (
        AclOperation.DESCRIBE,
        AclOperation.WRITE,
        AclOperation.TWO_PHASE_COMMIT,
    ),
}


@dataclass(frozen=True, slots=True)
class Action:
    """One question to the authorizer: may this session do ``operation`` on the resource?"""

    operation: AclOperation
    resource_type: ResourceType
    resource_name: str


class Authorizer(Protocol):
    def authorize(self, session: Session, actions: Sequence[Action]) -> list[bool]:
        """One answer per action, in order: True when allowed."""
        ...


class AllowAllAuthorizer:
    """Every principal may do everything: a Kafka broker without an authorizer."""

    def authorize(self, session: Session, actions: Sequence[Action]) -> list[bool]:
        return [True] * len(actions)


def authorized_operations(
    authorizer: Authorizer, session: Session, resource_type: ResourceType, name: str
) -> int:
    """The bit set of the ``*_authorized_operations`` response fields (KIP-430)."""
    ops = SUPPORTED_OPERATIONS.get(resource_type, ())
    allowed = authorizer.authorize(session, [Action(op, resource_type, name) for op in ops])
    return sum(1 << op for op, ok in zip(ops, allowed, strict=True) if ok)
