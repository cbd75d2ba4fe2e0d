"""Consumer groups, classic protocol: FindCoordinator (key 10), JoinGroup (11), Heartbeat
(12), LeaveGroup (13), SyncGroup (14), DescribeGroups (15), ListGroups (16), DeleteGroups (42).

The rules live behind :mod:`kafkacompat.coordinators.group_coordinator` (the service over the
coordinator runtime); this module maps versions onto it and asks the authorizer.  JoinGroup
and SyncGroup responses may wait for other members (a rebalance): the coordinator answers
through a callback, which resolves a future this connection awaits; a connection closed
meanwhile just drops its answer, as Kafka's does.

FindCoordinator: this broker coordinates every group, and creates ``__consumer_offsets`` on
the first lookup, as Kafka does (Kafka answers COORDINATOR_NOT_AVAILABLE while the topic is
being created; here creation is synchronous, so the first answer is already the coordinator).

Authorization, as Kafka's ``KafkaApis`` asks it: FindCoordinator DESCRIBE on the group (or the
transactional id); JoinGroup, SyncGroup, Heartbeat and LeaveGroup READ on the group;
DescribeGroups DESCRIBE on each group (and ``authorized_operations`` when asked); ListGroups
every group with DESCRIBE on the cluster, else only those with DESCRIBE on the group;
DeleteGroups DELETE on each group.  Refusals are GROUP_AUTHORIZATION_FAILED (or
TRANSACTIONAL_ID_AUTHORIZATION_FAILED), answered before the coordinator is asked.

A transactional id's coordinator is this broker too; the first lookup creates
``__transaction_state`` (see :mod:`kafkacompat.handlers.transactions`).  Share
groups (key type 2, KIP-932) get COORDINATOR_NOT_AVAILABLE, Kafka's answer when no share
coordinator runs; other key types are an INVALID_REQUEST.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, TypeVar

from kafkacompat.coordinators.group_coordinator import GroupCoordinator
from kafkacompat.coordinators.group_metadata import JoinGroupResult, SyncGroupResult
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.handlers.context import Handler, RequestContext
from kafkacompat.protocol.apis import ApiKey
from kafkacompat.protocol.messages.delete_groups_request import DeleteGroupsRequest
from kafkacompat.protocol.messages.delete_groups_response import (
    DeletableGroupResult,
    DeleteGroupsResponse,
)
from kafkacompat.protocol.messages.describe_groups_request import DescribeGroupsRequest
from kafkacompat.protocol.messages.describe_groups_response import (
    DescribedGroup,
    DescribedGroupMember,
    DescribeGroupsResponse,
)
from kafkacompat.protocol.messages.find_coordinator_request import FindCoordinatorRequest
from kafkacompat.protocol.messages.find_coordinator_response import (
    Coordinator,
    FindCoordinatorResponse,
)
from kafkacompat.protocol.messages.heartbeat_request import HeartbeatRequest
from kafkacompat.protocol.messages.heartbeat_response import HeartbeatResponse
from kafkacompat.protocol.messages.join_group_request import JoinGroupRequest
from kafkacompat.protocol.messages.join_group_response import (
    JoinGroupResponse,
    JoinGroupResponseMember,
)
from kafkacompat.protocol.messages.leave_group_request import LeaveGroupRequest
from kafkacompat.protocol.messages.leave_group_response import LeaveGroupResponse, MemberResponse
from kafkacompat.protocol.messages.list_groups_request import ListGroupsRequest
from kafkacompat.protocol.messages.list_groups_response import ListedGroup, ListGroupsResponse
from kafkacompat.protocol.messages.sync_group_request import SyncGroupRequest
from kafkacompat.protocol.messages.sync_group_response import SyncGroupResponse
from kafkacompat.security.authorizer import (
    CLUSTER_NAME,
    AclOperation,
    ResourceType,
    authorized_operations,
)

GROUP_KEY_TYPE: Final = 0
TRANSACTION_KEY_TYPE: Final = 1
SHARE_KEY_TYPE: Final = 2

OPERATIONS_NOT_REQUESTED: Final = -(2**31)
READ, DELETE, DESCRIBE = AclOperation.READ, AclOperation.DELETE, AclOperation.DESCRIBE
GROUP, CLUSTER = ResourceType.GROUP, ResourceType.CLUSTER

# Kafka's default messages for the errors FindCoordinator can answer with.
_MESSAGES: Final = {
    ErrorCode.COORDINATOR_NOT_AVAILABLE: "The coordinator is not available.",
    ErrorCode.GROUP_AUTHORIZATION_FAILED: "Group authorization failed.",
    ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "Transactional Id authorization failed.",
}

T = TypeVar("T")


def coordinator(ctx: RequestContext) -> GroupCoordinator:
    """The group coordinator, with its due timers run first."""
    ctx.broker.group_timer_driver.poll()
    return ctx.broker.groups


async def wait_for(register: Callable[[Callable[[T], None]], None]) -> T:
    """Hand the coordinator a callback and wait for it to be called."""
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    def respond(result: T) -> None:
        if not future.done():  # cancelled: the connection closed while parked
            future.set_result(result)

    register(respond)
    return await future


# -- FindCoordinator --------------------------------------------------------------------------------


def _find(ctx: RequestContext, key_type: int, key: str) -> tuple[ErrorCode, str | None]:
    if key_type == GROUP_KEY_TYPE:
        if not ctx.authorize(DESCRIBE, GROUP, key):
            return ErrorCode.GROUP_AUTHORIZATION_FAILED, None
        try:
            ctx.broker.groups.ensure_offsets_topic()
        except KafkaProtocolError as exc:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, str(exc)
        return ErrorCode.NONE, None
    if key_type == TRANSACTION_KEY_TYPE:
        if not ctx.authorize(DESCRIBE, ResourceType.TRANSACTIONAL_ID, key):
            return ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, None
        try:
            ctx.broker.ensure_transaction_state_topic()
        except KafkaProtocolError as exc:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, str(exc)
        return ErrorCode.NONE, None
    if key_type == SHARE_KEY_TYPE:
        return ErrorCode.COORDINATOR_NOT_AVAILABLE, None
    return ErrorCode.INVALID_REQUEST, f"Unknown coordinator type received: {key_type}"


async def find_coordinator(
    ctx: RequestContext, request: FindCoordinatorRequest
) -> FindCoordinatorResponse:
    version = ctx.api_version
    key_type = request.key_type if version >= 1 else GROUP_KEY_TYPE
    host, port = ctx.broker.advertised_host_port
    node = ctx.broker.node_id
    if version >= 4:
        coordinators = []
        for key in request.coordinator_keys:
            error, message = _find(ctx, key_type, key)
            ok = error == ErrorCode.NONE
            coordinators.append(
                Coordinator(
                    key=key,
                    node_id=node if ok else -1,
                    host=host if ok else "",
                    port=port if ok else -1,
                    error_code=error,
                    error_message=None if ok else message or _MESSAGES.get(error),
                )
            )
        return FindCoordinatorResponse(coordinators=coordinators)
    error, message = _find(ctx, key_type, request.key)
    if error != ErrorCode.NONE:
        return FindCoordinatorResponse(
            error_code=error,
            error_message=message or _MESSAGES.get(error),
            node_id=-1,
            host="",
            port=-1,
        )
    # Kafka fills the message from Errors.NONE.message(), which is the enum's name.
    return FindCoordinatorResponse(
        error_code=ErrorCode.NONE, error_message="NONE", node_id=node, host=host, port=port
    )


# -- JoinGroup, SyncGroup, Heartbeat, LeaveGroup ----------------------------------------------------


async def join_group(ctx: RequestContext, request: JoinGroupRequest) -> JoinGroupResponse:
    version = ctx.api_version
    if not ctx.authorize(READ, GROUP, request.group_id):
        return _join_response(version, JoinGroupResult("", ErrorCode.GROUP_AUTHORIZATION_FAILED))
    groups = coordinator(ctx)
    protocols: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for protocol in request.protocols:
        # Kafka keys the protocols by name: a repeated name keeps its first metadata.
        if protocol.name not in seen:
            seen.add(protocol.name)
            protocols.append((protocol.name, bytes(protocol.metadata)))
    instance = request.group_instance_id if version >= 5 else None

    def register(respond: Callable[[JoinGroupResult], None]) -> None:
        groups.join_group(
            request.group_id,
            request.member_id,
            instance,
            require_known_member_id=version >= 4,
            support_skip_assignment=version >= 9,
            client_id=ctx.client_id,
            client_host=f"/{ctx.client_host}",
            # v0 has no rebalance timeout: the session timeout was both.
            rebalance_timeout_ms=request.session_timeout_ms
            if version == 0
            else request.rebalance_timeout_ms,
            session_timeout_ms=request.session_timeout_ms,
            protocol_type=request.protocol_type,
            protocols=protocols,
            respond=respond,
            reason=request.reason if version >= 8 else None,
        )

    return _join_response(version, await wait_for(register))


def _join_response(version: int, result: JoinGroupResult) -> JoinGroupResponse:
    protocol_name = result.protocol_name
    if protocol_name is None and version < 7:
        protocol_name = ""  # nullable only from v7
    return JoinGroupResponse(
        error_code=result.error,
        generation_id=result.generation_id,
        protocol_type=result.protocol_type,
        protocol_name=protocol_name,
        leader=result.leader_id,
        skip_assignment=result.skip_assignment,
        member_id=result.member_id,
        members=[
            JoinGroupResponseMember(
                member_id=m.member_id, group_instance_id=m.group_instance_id, metadata=m.metadata
            )
            for m in result.members
        ],
    )


async def sync_group(ctx: RequestContext, request: SyncGroupRequest) -> SyncGroupResponse:
    version = ctx.api_version
    groups = coordinator(ctx)
    if version >= 5 and (request.protocol_type is None or request.protocol_name is None):
        # From v5 both are mandatory.
        return SyncGroupResponse(error_code=ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
    if not ctx.authorize(READ, GROUP, request.group_id):
        return SyncGroupResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    assignments = {a.member_id: bytes(a.assignment) for a in request.assignments}

    def register(respond: Callable[[SyncGroupResult], None]) -> None:
        groups.sync_group(
            request.group_id,
            request.generation_id,
            request.member_id,
            request.group_instance_id if version >= 3 else None,
            request.protocol_type if version >= 5 else None,
            request.protocol_name if version >= 5 else None,
            assignments,
            respond,
        )

    result: SyncGroupResult = await wait_for(register)
    return SyncGroupResponse(
        error_code=result.error,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name,
        assignment=result.assignment,
    )


async def heartbeat(ctx: RequestContext, request: HeartbeatRequest) -> HeartbeatResponse:
    if not ctx.authorize(READ, GROUP, request.group_id):
        return HeartbeatResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    error = coordinator(ctx).heartbeat(
        request.group_id,
        request.member_id,
        request.group_instance_id if ctx.api_version >= 3 else None,
        request.generation_id,
    )
    return HeartbeatResponse(error_code=error)


async def leave_group(ctx: RequestContext, request: LeaveGroupRequest) -> LeaveGroupResponse:
    version = ctx.api_version
    if not ctx.authorize(READ, GROUP, request.group_id):
        return LeaveGroupResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    if version >= 3:
        leaving = [(m.member_id, m.group_instance_id) for m in request.members]
    else:
        leaving = [(request.member_id, None)]
    error, member_errors = coordinator(ctx).leave_group(request.group_id, leaving)
    if version < 3:
        # One member, so its error is the response's error.
        if error == ErrorCode.NONE and member_errors:
            error = member_errors[0]
        return LeaveGroupResponse(error_code=error)
    return LeaveGroupResponse(
        error_code=error,
        members=[
            MemberResponse(
                member_id=m.member_id, group_instance_id=m.group_instance_id, error_code=e
            )
            for m, e in zip(request.members, member_errors, strict=False)
        ],
    )


# -- DescribeGroups, ListGroups, DeleteGroups -------------------------------------------------------


async def describe_groups(
    ctx: RequestContext, request: DescribeGroupsRequest
) -> DescribeGroupsResponse:
    groups = coordinator(ctx)
    asked_operations = ctx.api_version >= 3 and request.include_authorized_operations
    described = []
    allowed = ctx.authorized(DESCRIBE, GROUP, request.groups)
    for group_id in request.groups:
        if group_id not in allowed:
            described.append(
                DescribedGroup(
                    error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED,
                    group_id=group_id,
                    group_state="",
                    protocol_type="",
                    protocol_data="",
                    members=[],
                    authorized_operations=OPERATIONS_NOT_REQUESTED,
                )
            )
            continue
        error, summary = groups.describe_group(group_id)
        described.append(
            DescribedGroup(
                error_code=error,
                group_id=group_id,
                group_state=summary.state,
                protocol_type=summary.protocol_type,
                protocol_data=summary.protocol,
                members=[
                    DescribedGroupMember(
                        member_id=m.member_id,
                        group_instance_id=m.group_instance_id,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        member_metadata=m.metadata,
                        member_assignment=m.assignment,
                    )
                    for m in summary.members
                ],
                authorized_operations=authorized_operations(
                    ctx.broker.authorizer, ctx.session, GROUP, group_id
                )
                if asked_operations and error == ErrorCode.NONE
                else OPERATIONS_NOT_REQUESTED,
            )
        )
    return DescribeGroupsResponse(groups=described)


async def list_groups(ctx: RequestContext, request: ListGroupsRequest) -> ListGroupsResponse:
    version = ctx.api_version
    error, overviews = coordinator(ctx).list_groups(
        request.states_filter if version >= 4 else (),
        request.types_filter if version >= 5 else (),
    )
    if not ctx.authorize(DESCRIBE, CLUSTER, CLUSTER_NAME):
        # Without DESCRIBE on the cluster, only the groups the session may describe.
        allowed = ctx.authorized(DESCRIBE, GROUP, (g.group_id for g in overviews))
        overviews = [g for g in overviews if g.group_id in allowed]
    return ListGroupsResponse(
        error_code=error,
        groups=[
            ListedGroup(
                group_id=g.group_id,
                protocol_type=g.protocol_type,
                group_state=g.state,
                group_type=g.group_type,
            )
            for g in overviews
        ],
    )


async def delete_groups(ctx: RequestContext, request: DeleteGroupsRequest) -> DeleteGroupsResponse:
    names = list(dict.fromkeys(request.groups_names))  # Kafka answers each name once
    allowed = ctx.authorized(DELETE, GROUP, names)
    errors = coordinator(ctx).delete_groups([n for n in names if n in allowed])
    errors.update((n, ErrorCode.GROUP_AUTHORIZATION_FAILED) for n in names if n not in allowed)
    return DeleteGroupsResponse(
        results=[DeletableGroupResult(group_id=name, error_code=errors[name]) for name in names]
    )


HANDLES: dict[int, Handler] = {
    ApiKey.FIND_COORDINATOR: find_coordinator,
    ApiKey.JOIN_GROUP: join_group,
    ApiKey.SYNC_GROUP: sync_group,
    ApiKey.HEARTBEAT: heartbeat,
    ApiKey.LEAVE_GROUP: leave_group,
    ApiKey.DESCRIBE_GROUPS: describe_groups,
    ApiKey.LIST_GROUPS: list_groups,
    ApiKey.DELETE_GROUPS: delete_groups,
}
