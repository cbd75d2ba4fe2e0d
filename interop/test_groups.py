"""Consumer groups with real clients: confluent-kafka, kafka-python, aiokafka and kafkajs
consumers, each in its own process (``group_clients.py``), against a real broker.

What each client must see, as with Kafka: members of one group share a topic's partitions
(disjoint, complete); committing after processing reads each record once, also across a
member closing (its partitions handed over at its commits), a member SIGKILLed (removed
after its session timeout, not before), a restart of the group (it resumes at its commits)
and broker restarts (SIGTERM and SIGKILL: commits kept, the group re-forms);
auto.offset.reset applies to a new group; a static member (group.instance.id) that restarts
within its session gets its partitions back without a rebalance; cooperative-sticky members
keep their partitions while another joins or leaves.

The broker allows 1 s sessions and completes a new group's first rebalance at once
(``BROKER_SETTINGS``); members use 2.5 s sessions and 250 ms heartbeats.  The scenarios that
wait out a session timeout or a broker restart run every client at once (one group each),
so that those waits overlap.
"""

from __future__ import annotations

import functools
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from interop.clients import missing_tool, require
from interop.conftest import BrokerFactory, BrokerProcess, new_broker
from interop.group_clients import (
    BROKER_SETTINGS,
    GROUP_CLIENTS,
    HEARTBEAT_INTERVAL_MS,
    SESSION_TIMEOUT_MS,
    GroupView,
    Member,
    MemberPool,
    MemberSpec,
    assert_exactly_once,
    committed_offsets,
    create_topic,
    describe_group,
    ends_of,
    happened,
    member_pool,
    missing_group_apis,
    partitions_of,
    poll_until,
    produce_batch,
    run_for_clients,
    wait_consumed,
    wait_settled,
    wait_until,
)

PARTITIONS = 6


@pytest.fixture(scope="module")
def group_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One disk broker for this module, with the short group timings."""
    process = new_broker(tmp_path_factory.mktemp("group-broker"), settings=BROKER_SETTINGS)
    try:
        process.start()
        fail_without_group_apis(process.bootstrap)
        yield process
    finally:
        code = process.stop()
    assert code == 0, f"group broker exit code {code}:\n{process.log_tail()}"


def fail_without_group_apis(bootstrap: str) -> None:
    """Fail at once, not after every wait has run out, while the broker has no groups."""
    missing = missing_group_apis(bootstrap)
    if missing:
        pytest.fail(f"the broker does not advertise {', '.join(missing)}", pytrace=False)


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[MemberPool]:
    with member_pool(tmp_path / "members") as members:
        yield members


@pytest.fixture(params=GROUP_CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    require(name)
    return name


def available_clients() -> list[str]:
    """The group clients installed here; the test is skipped (saying why) if none is."""
    found = [c for c in GROUP_CLIENTS if missing_tool(c) is None]
    skipped = {c: missing_tool(c) for c in GROUP_CLIENTS if c not in found}
    if skipped:
        print(f"group clients not installed, left out: {skipped}")
    if not found:
        pytest.skip(f"no group client installed: {skipped}")
    return found


def specs(client: str, bootstrap: str, group: str, topic: str) -> functools.partial[MemberSpec]:
    return functools.partial(MemberSpec, client, bootstrap, group, (topic,))


def stable_view(bootstrap: str, group: str, members: list[Member], pool: MemberPool) -> GroupView:
    """DescribeGroups once it shows ``members`` Stable, each with the assignment it reports."""
    expected = {m.name: frozenset(m.assignment) for m in members}

    def probe() -> GroupView | None:
        view = describe_group(bootstrap, group)
        if view.state == "STABLE" and view.assignments() == expected:
            return view
        return None

    return poll_until(probe, f"group {group} Stable with {sorted(expected)}", pool)


# -- every client on its own -----------------------------------------------------------------


def test_share_consume_hand_over_and_resume(
    group_broker: BrokerProcess, pool: MemberPool, client: str, topic: str
) -> None:
    """Three members share six partitions two each; every record is read once while they
    commit after processing; a member that closes hands its partitions over at its commits;
    a member started after the whole group stopped resumes at the commits."""
    bootstrap = group_broker.bootstrap
    create_topic(bootstrap, topic, PARTITIONS)
    group = f"{topic}-group"
    everything = partitions_of(topic, PARTITIONS)
    spec = specs(client, bootstrap, group, topic)

    members = pool.start_all(spec(client_id=f"m{i}") for i in (1, 2, 3))
    m1, m2, m3 = members
    wait_settled(members, everything, pool, "after three joined")
    assert sorted(len(m.assignment) for m in members) == [2, 2, 2], pool.describe()
    view = stable_view(bootstrap, group, members, pool)
    assert len({m.member_id for m in view.members}) == 3

    first = produce_batch(bootstrap, topic, range(PARTITIONS), 5, "first")
    wait_consumed(members, first, pool)
    assert_exactly_once(members, first)
    for m in members:
        read_from = {(t, p) for t, p, _ in m.read_keys()}
        assert read_from <= m.assignment, f"{m.name} read outside its assignment: {read_from}"

    handed_over = set(m3.assignment)
    m3.close()
    wait_settled([m1, m2], everything, pool, "after m3 left")
    second = produce_batch(bootstrap, topic, range(PARTITIONS), 5, "second")
    wait_consumed([m1, m2], second, pool)
    # m3's partitions were taken up at m3's commits: none of the first records again.
    assert_exactly_once(members, first + second)
    taken_over = {(t, p) for m in (m1, m2) for t, p, _ in m.read_keys() if (t, p) in handed_over}
    assert taken_over == handed_over, f"{handed_over} not read by m1, m2 after m3 left"

    pool.close_all([m1, m2])
    empty = poll_until(
        lambda: v if (v := describe_group(bootstrap, group)).state == "EMPTY" else None,
        "the group Empty once every member left",
        pool,
    )
    assert empty.members == ()
    third = produce_batch(bootstrap, topic, range(PARTITIONS), 3, "third")
    m4 = pool.start(spec(client_id="m4"))
    wait_settled([m4], everything, pool, "for the restarted group")
    wait_consumed([m4], third, pool)
    assert sorted(m4.read_keys()) == third, "the restarted member did not resume at the commits"
    offsets = committed_offsets(bootstrap, group, everything)
    assert offsets == ends_of(first + second + third)
    m4.close()


def test_auto_offset_reset(
    group_broker: BrokerProcess, pool: MemberPool, client: str, topic: str
) -> None:
    """A new group starts at the log start (earliest) or at the log end (latest)."""
    bootstrap = group_broker.bootstrap
    create_topic(bootstrap, topic, 1)
    only = partitions_of(topic, 1)
    old = produce_batch(bootstrap, topic, [0], 4, "old")
    early = pool.start(
        specs(client, bootstrap, f"{topic}-earliest", topic)(
            client_id="early", auto_offset_reset="earliest"
        )
    )
    late = pool.start(
        specs(client, bootstrap, f"{topic}-latest", topic)(
            client_id="late", auto_offset_reset="latest"
        )
    )
    wait_settled([early], only, pool)
    wait_settled([late], only, pool)
    wait_consumed([early], old, pool)
    assert sorted(early.read_keys()) == old

    # "latest" takes effect when the member looks its position up, some time after it is
    # assigned: produce one record at a time until it reads one.
    new: list[tuple[str, int, int]] = []
    deadline = time.monotonic() + 15
    while not late.records:
        assert time.monotonic() < deadline, "the latest member read nothing\n" + pool.describe()
        new += produce_batch(bootstrap, topic, [0], 1, f"new{len(new)}")
        happened(lambda: bool(late.records), 0.3)
    wait_consumed([late], new[-1:], pool)
    read = sorted(late.read_keys())
    assert not set(read) & set(old), f"the latest member read old records: {read}"
    assert read == new[len(new) - len(read) :], f"not a tail of the new records: {read} of {new}"
    wait_consumed([early], new, pool)
    assert_exactly_once([early], old + new)
    pool.close_all([early, late])


def test_static_member_restart_without_rebalance(
    group_broker: BrokerProcess, pool: MemberPool, client: str, topic: str
) -> None:
    """A static member (group.instance.id) SIGKILLed and restarted within its session gets
    its partitions back at once: the others see no rebalance, the generation stays."""
    if client == "kafkajs":
        pytest.skip("kafkajs 2.2.4 has no static membership (group.instance.id)")
    bootstrap = group_broker.bootstrap
    create_topic(bootstrap, topic, PARTITIONS)
    group = f"{topic}-group"
    everything = partitions_of(topic, PARTITIONS)
    spec = functools.partial(
        specs(client, bootstrap, group, topic), session_timeout_ms=6000
    )  # room for a restart

    members = pool.start_all(spec(client_id=f"s{i}", group_instance_id=f"s{i}") for i in (1, 2, 3))
    s1, s2, s3 = members
    wait_settled(members, everything, pool)
    before = stable_view(bootstrap, group, members, pool)
    assert {m.group_instance_id for m in before.members} == {"s1", "s2", "s3"}
    events = {m.name: m.assignment_events for m in (s1, s2)}
    generation = s1.generation
    held = set(s3.assignment)
    first = produce_batch(bootstrap, topic, range(PARTITIONS), 2, "before")
    wait_consumed(members, first, pool)

    s3.kill()
    again = pool.start(spec(client_id="s3", group_instance_id="s3"))
    wait_until(lambda: again.assignment == held, "the restarted static member reassigned", pool)
    time.sleep(4 * HEARTBEAT_INTERVAL_MS / 1000)  # a rebalance would reach s1, s2 by now
    assert {m.name: m.assignment_events for m in (s1, s2)} == events, (
        "the other members went through a rebalance\n" + pool.describe()
    )
    if generation is not None:  # kafka-python and aiokafka report it
        assert again.generation == generation == s1.generation, pool.describe()
    after = describe_group(bootstrap, group)
    assert after.state == "STABLE"
    assert after.assignments() == before.assignments()
    assert {(m.group_instance_id, m.member_id) for m in after.members if m.client_id != "s3"} == {
        (m.group_instance_id, m.member_id) for m in before.members if m.client_id != "s3"
    }

    # The restarted member reads its partitions from s3's commits on.
    second = produce_batch(bootstrap, topic, range(PARTITIONS), 2, "after")
    wait_consumed([s1, s2, again], second, pool)
    assert_exactly_once([s1, s2, s3, again], first + second)
    pool.close_all([s1, s2, again])


@pytest.mark.parametrize("cooperative_client", ["confluent", "kafka-python"])
def test_cooperative_sticky(
    group_broker: BrokerProcess, pool: MemberPool, cooperative_client: str, topic: str
) -> None:
    """partition.assignment.strategy=cooperative-sticky (KIP-429): a member joining takes
    partitions from the others without them giving up the rest; a member leaving has its
    partitions added to the others' (incremental assign and revoke callbacks)."""
    client = cooperative_client
    bootstrap = group_broker.bootstrap
    create_topic(bootstrap, topic, PARTITIONS)
    group = f"{topic}-group"
    everything = partitions_of(topic, PARTITIONS)
    spec = functools.partial(specs(client, bootstrap, group, topic), assignor="cooperative-sticky")

    m1, m2 = pool.start_all(spec(client_id=f"c{i}") for i in (1, 2))
    wait_settled([m1, m2], everything, pool)
    had = {m.name: set(m.assignment) for m in (m1, m2)}
    marks = {m.name: len(m.events) for m in (m1, m2)}

    m3 = pool.start(spec(client_id="c3"))
    wait_settled([m1, m2, m3], everything, pool, "after c3 joined")
    wait_until(lambda: sorted(len(m.assignment) for m in (m1, m2, m3)) == [2, 2, 2], "2 each", pool)
    for m in (m1, m2):
        kept = m.assignment
        assert kept <= had[m.name], f"{m.name} was given new partitions: {pool.describe()}"
        changes = m.since(marks[m.name])
        assert not [e for e in changes if e["event"] == "lost"]
        # Eager members revoke everything before rejoining; cooperative ones only what moves.
        revoked = {(t, p) for e in changes if e["event"] == "revoked" for t, p in e["partitions"]}
        assert revoked == had[m.name] - kept, f"{m.name} revoked {revoked}, kept {kept}"
        assert kept, f"{m.name} kept nothing"
    view = stable_view(bootstrap, group, [m1, m2, m3], pool)
    assert view.assignor == "cooperative-sticky"

    had = {m.name: set(m.assignment) for m in (m1, m2)}
    marks = {m.name: len(m.events) for m in (m1, m2)}
    m3.close()
    wait_settled([m1, m2], everything, pool, "after c3 left")
    for m in (m1, m2):
        assert m.assignment >= had[m.name]
        assert not [e for e in m.since(marks[m.name]) if e["event"] in ("revoked", "lost")], (
            f"{m.name} gave up partitions when c3 left\n" + pool.describe()
        )
    pool.close_all([m1, m2])


# -- every client at once: the scenarios that wait out a session or a restart ---------------


def test_killed_member_removed_after_session_timeout(
    group_broker: BrokerProcess, pool: MemberPool, topic: str
) -> None:
    """A member SIGKILLed (no LeaveGroup) stays in the group until its session times out,
    then its partitions go to the others, which read on from its commits."""
    clients = available_clients()
    bootstrap = group_broker.bootstrap
    session_s = SESSION_TIMEOUT_MS / 1000

    def scenario(client: str) -> None:
        name = f"{topic}-{client}"
        create_topic(bootstrap, name, PARTITIONS)
        everything = partitions_of(name, PARTITIONS)
        spec = specs(client, bootstrap, f"{name}-group", name)
        members = pool.start_all(spec(client_id=f"{client}-k{i}") for i in (1, 2, 3))
        k1, k2, k3 = members
        wait_settled(members, everything, pool)
        first = produce_batch(bootstrap, name, range(PARTITIONS), 4, "first")
        wait_consumed(members, first, pool)

        k3.kill()
        took = wait_settled([k1, k2], everything, pool, f"after {k3.name} was killed")
        # The last heartbeat came at most an interval before the kill; Kafka does not act on
        # the connection closing.
        assert took >= session_s - 1.0, f"{k3.name} removed {took:.2f}s after the kill"
        view = describe_group(bootstrap, f"{name}-group")
        assert sorted(m.client_id for m in view.members) == [k1.name, k2.name]

        second = produce_batch(bootstrap, name, range(PARTITIONS), 4, "second")
        wait_consumed([k1, k2], second, pool)
        assert_exactly_once(members, first + second)
        pool.close_all([k1, k2])

    run_for_clients(clients, scenario)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_broker_restart_keeps_offsets_and_groups_reform(
    broker_factory: BrokerFactory, pool: MemberPool, topic: str, signum: signal.Signals
) -> None:
    """Groups of every client on a disk broker that restarts (stopped cleanly, or killed)
    under them: the committed offsets are still there, the groups re-form with their
    members, and reading goes on from the commits, nothing read twice."""
    clients = available_clients()
    broker = broker_factory(storage="disk", settings=BROKER_SETTINGS)
    bootstrap = broker.bootstrap
    fail_without_group_apis(bootstrap)
    names = {client: f"{topic}-{client}" for client in clients}
    groups: dict[str, tuple[list[Member], list[tuple[str, int, int]]]] = {}

    def before(client: str) -> None:
        name = names[client]
        create_topic(bootstrap, name, PARTITIONS)
        spec = specs(client, bootstrap, f"{name}-group", name)
        members = pool.start_all(spec(client_id=f"{client}-r{i}") for i in (1, 2))
        wait_settled(members, partitions_of(name, PARTITIONS), pool)
        first = produce_batch(bootstrap, name, range(PARTITIONS), 4, "before")
        wait_consumed(members, first, pool)
        groups[client] = (members, first)

    run_for_clients(clients, before)

    code = broker.restart(signum)
    assert code == (0 if signum == signal.SIGTERM else -signal.SIGKILL), broker.log_tail()

    def after(client: str) -> None:
        name = names[client]
        group = f"{name}-group"
        everything = partitions_of(name, PARTITIONS)
        members, first = groups[client]
        ends = ends_of(first)
        poll_until(
            lambda: True if committed_offsets(bootstrap, group, everything) == ends else None,
            f"{group}'s commits back after the restart",
            pool,
        )
        wait_settled(members, everything, pool, "after the restart")
        stable_view(bootstrap, group, members, pool)
        second = produce_batch(bootstrap, name, range(PARTITIONS), 4, "after")
        wait_consumed(members, second, pool)
        assert_exactly_once(members, first + second)
        pool.close_all(members)

    run_for_clients(clients, after)
