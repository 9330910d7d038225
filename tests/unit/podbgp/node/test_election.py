"""Automatic route reflectors: the election is pure, order-free, spread, labelled-first, stable."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from podbgp.cluster.datastore.records import NodeInfo
from podbgp.cluster.reflectors import RouteReflectors
from podbgp.cluster.resources import BGPConfiguration
from podbgp.cluster.selector import parse_selector
from podbgp.node.election import Election, elect

CANDIDATE = (("rr", "yes"),)


def auto(
    threshold: int = 4, count: int = 2, hysteresis: int | None = 1, **kw: object
) -> BGPConfiguration:
    rr = RouteReflectors("auto", threshold, hysteresis, count, "244.0.0.1", **kw)  # type: ignore[arg-type]
    return BGPConfiguration("default", route_reflectors=rr)


def node(name: str, subnet: int, host: int, *, labelled: bool = False, elected: bool = False,
         registered: bool = True, asn: int | None = None) -> NodeInfo:  # fmt: skip
    return NodeInfo(
        name=name,
        addresses=(f"10.{subnet}.0.{host}/24",),
        as_number=asn,
        labels=CANDIDATE if labelled else (),
        registered=registered,
        elected_reflector=elected,
    )


def view(*nodes: NodeInfo) -> dict[str, NodeInfo]:
    return {n.name: n for n in nodes}


def test_off_or_absent_and_below_threshold() -> None:
    nodes = view(*(node(f"n{i}", 1, i) for i in range(5)))
    assert elect(BGPConfiguration("default"), nodes).mode == "off"
    off = BGPConfiguration("default", route_reflectors=RouteReflectors("off", 4, None, 2))
    assert elect(off, nodes).mode == "off"
    small = view(*(node(f"n{i}", 1, i) for i in range(3)))
    result = elect(auto(), small)
    assert result == Election("mesh", 3, reason=result.reason) and not result.active
    assert "hysteresis band: the mesh stays" in result.reason


def test_at_threshold_elects_count_spread_over_subnets() -> None:
    nodes = view(node("a", 1, 1), node("b", 1, 2), node("c", 1, 3), node("d", 2, 1))
    result = elect(auto(), nodes)
    assert result.active and result.nodes == 4 and result.cluster_id == "244.0.0.1"
    # a (first name) in subnet 1, then the emptiest subnet: d, the only node of subnet 2
    assert result.reflectors == ("a", "d")


def test_hysteresis_band_keeps_what_the_registrations_say() -> None:
    three = [node("a", 1, 1), node("b", 1, 2), node("c", 2, 1)]
    assert elect(auto(), view(*three)).mode == "mesh"  # nobody elected: mesh stays
    with_incumbent = [three[0], node("b", 1, 2, elected=True), three[2]]
    kept = elect(auto(), view(*with_incumbent))
    assert kept.active and "b" in kept.reflectors
    two = with_incumbent[:2]  # below threshold - hysteresis (3): mesh whatever was before
    assert elect(auto(), view(*two)).mode == "mesh"
    # hysteresis 0: the band is empty, below the threshold is the mesh
    assert elect(auto(hysteresis=0), view(*with_incumbent)).mode == "mesh"


def test_candidates_first_then_incumbents_then_the_rest() -> None:
    nodes = view(
        node("a", 1, 1, elected=True),
        node("b", 1, 2, elected=True),
        node("c", 1, 3),
        node("z", 2, 9, labelled=True),
    )
    result = elect(auto(candidate_selector=parse_selector("rr == 'yes'")), nodes)
    assert result.reflectors == ("a", "z")  # the candidate takes one seat; an incumbent keeps one


def test_ineligible_nodes_are_not_elected_but_counted() -> None:
    nodes = view(
        node("a", 1, 1, registered=False),  # no agent runs there
        node("b", 1, 2, asn=65000),  # another AS: cannot reflect for the cluster's iBGP
        node("c", 1, 3),
        node("d", 1, 4),
    )
    result = elect(auto(), nodes)
    assert result.nodes == 4 and result.reflectors == ("c", "d")
    lonely = view(*(node(f"n{i}", 1, i, registered=False) for i in range(4)))
    assert elect(auto(), lonely).mode == "mesh"  # nobody to elect: the mesh, not a partition


def test_explicit_reflectors_switch_the_election_off() -> None:
    explicit = NodeInfo("rr", ("10.1.0.9/24",), route_reflector_cluster_id="1.0.0.1")
    nodes = view(*(node(f"n{i}", 1, i) for i in range(5)), explicit)
    result = elect(auto(), nodes)
    assert result.mode == "explicit" and not result.reflectors and "Node/rr" in result.reason


# --- properties -------------------------------------------------------------------------------

NODES = st.lists(
    st.tuples(st.integers(0, 3), st.booleans(), st.booleans(), st.booleans()),
    min_size=0,
    max_size=14,
).map(
    lambda specs: [
        node(f"n{i:02d}", subnet, i + 1, labelled=lab, elected=inc, registered=reg)
        for i, (subnet, lab, inc, reg) in enumerate(specs)
    ]
)
CONFIGS = st.builds(
    lambda threshold, count, hyst, sel: auto(
        threshold, min(count, threshold - 1), min(hyst, threshold - 1),
        candidate_selector=parse_selector("rr == 'yes'") if sel else None,
    ),
    st.integers(2, 12), st.integers(1, 5), st.integers(0, 4), st.booleans(),
)  # fmt: skip


@given(NODES, CONFIGS, st.randoms())
@settings(max_examples=300, deadline=None)
def test_same_view_same_answer_in_any_order(
    nodes: list[NodeInfo], config: BGPConfiguration, rnd: random.Random
) -> None:
    shuffled = list(nodes)
    rnd.shuffle(shuffled)
    assert elect(config, view(*nodes)) == elect(config, view(*shuffled))


@given(NODES, CONFIGS)
@settings(max_examples=300, deadline=None)
def test_seats_count_eligibility_labels_and_spread(
    nodes: list[NodeInfo], config: BGPConfiguration
) -> None:
    rr = config.route_reflectors
    assert rr is not None
    result = elect(config, view(*nodes))
    if not result.active:
        assert result.reflectors == ()
        return
    eligible = [n for n in nodes if n.registered]
    chosen = [n for n in nodes if n.name in result.reflectors]
    assert len(chosen) == min(rr.count, len(eligible))
    assert all(n.registered for n in chosen)
    sel = rr.candidate_selector
    if sel is not None:  # never an unlabelled node while a labelled one is left out
        labelled_out = [n for n in eligible if sel.matches(n.label_map) and n not in chosen]
        assert not labelled_out or all(sel.matches(n.label_map) for n in chosen)
    if sel is None and not any(n.elected_reflector for n in nodes):
        # no preference and no history: seats per subnet differ by at most one among the
        # subnets that still had nodes to give
        seats: dict[str, int] = {}
        for n in chosen:
            seats[n.addresses[0].split(".")[1]] = seats.get(n.addresses[0].split(".")[1], 0) + 1
        spare = {n.addresses[0].split(".")[1] for n in eligible if n not in chosen}
        most = max(seats.values())
        assert all(seats.get(s, 0) >= most - 1 for s in spare)


@given(NODES, CONFIGS, st.integers(0, 3))
@settings(max_examples=300, deadline=None)
def test_a_joining_node_does_not_unseat_a_reflector(
    nodes: list[NodeInfo], config: BGPConfiguration, subnet: int
) -> None:
    """Publish the election (as the agents do), add one unlabelled node: the reflectors stay."""
    first = elect(config, view(*nodes))
    published = [
        NodeInfo(n.name, n.addresses, labels=n.labels, registered=n.registered,
                 elected_reflector=n.name in first.reflectors)
        for n in nodes
    ]  # fmt: skip
    again = elect(config, view(*published))
    assert again.reflectors == first.reflectors  # a fixed point: publishing changes nothing
    joined = elect(config, view(*published, node("zz-new", subnet, 99)))
    if first.active:
        assert joined.active and set(first.reflectors) <= set(joined.reflectors)
