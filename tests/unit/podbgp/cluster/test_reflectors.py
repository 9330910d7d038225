"""BGPConfiguration.spec.routeReflectors: parsing, defaults, refusals, canonical form."""

from __future__ import annotations

from typing import Any

import pytest

from podbgp.cluster.consistency import check_consistency
from podbgp.cluster.reflectors import RouteReflectors
from podbgp.cluster.resources import (
    BGPConfiguration,
    Node,
    ResourceError,
    parse_resource,
    to_dict,
)
from podbgp.cluster.selector import parse_selector


def config(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "podbgp/v1",
        "kind": "BGPConfiguration",
        "metadata": {"name": "default"},
        "spec": spec,
    }


def parse(**spec: Any) -> BGPConfiguration:
    res = parse_resource(config(**spec), "rr.yaml")
    assert isinstance(res, BGPConfiguration)
    return res


def test_absent_is_none_and_bare_auto_takes_every_default() -> None:
    assert parse().route_reflectors is None
    rr = parse(routeReflectors="auto").route_reflectors
    assert rr == RouteReflectors()
    assert rr is not None and rr.auto
    assert (rr.node_threshold, rr.count, rr.cluster_id) == (100, 3, "244.0.0.1")
    assert rr.mesh_below == 90  # default hysteresis: a tenth of the threshold


def test_every_field_is_read() -> None:
    rr = parse(
        routeReflectors={
            "mode": "auto",
            "nodeThreshold": 4,
            "hysteresis": 0,
            "count": 2,
            "clusterID": "10.9.9.9",
            "candidateSelector": "rr == 'yes'",
        }
    ).route_reflectors
    assert rr == RouteReflectors("auto", 4, 0, 2, "10.9.9.9", parse_selector("rr == 'yes'"))
    assert rr.mesh_below == 4
    off = parse(routeReflectors={"mode": "off"}).route_reflectors
    assert off is not None and not off.auto


def test_canonical_form_round_trips() -> None:
    res = parse(
        routeReflectors={"mode": "auto", "nodeThreshold": 10, "hysteresis": 3, "count": 2,
                         "candidateSelector": "has(rr)"}
    )  # fmt: skip
    doc = to_dict(res)
    assert doc["spec"]["routeReflectors"] == {
        "mode": "auto",
        "nodeThreshold": 10,
        "hysteresis": 3,
        "count": 2,
        "clusterID": "244.0.0.1",
        "candidateSelector": "has(rr)",
    }
    assert parse_resource(doc, "again") == res
    assert "routeReflectors" not in to_dict(parse())["spec"]


@pytest.mark.parametrize(
    ("value", "key", "problem"),
    [
        ("yes", "spec.routeReflectors", "must be 'auto' or a mapping"),
        (["auto"], "spec.routeReflectors", "must be a mapping"),
        ({"nodeThreshold": 5}, "spec.routeReflectors.mode", "required key is missing"),
        ({"mode": "Auto"}, "spec.routeReflectors.mode", "must be one of auto, off"),
        ({"mode": "auto", "nodeThreshold": 1}, "spec.routeReflectors.nodeThreshold", "2.."),
        ({"mode": "auto", "nodeThreshold": "5"}, "spec.routeReflectors.nodeThreshold", "integer"),
        ({"mode": "auto", "count": 0}, "spec.routeReflectors.count", "1.."),
        ({"mode": "auto", "nodeThreshold": 3, "count": 3}, "spec.routeReflectors.count",
         "less than nodeThreshold (3)"),
        ({"mode": "auto", "nodeThreshold": 5, "hysteresis": 5},
         "spec.routeReflectors.hysteresis", "less than nodeThreshold (5)"),
        ({"mode": "auto", "hysteresis": -1}, "spec.routeReflectors.hysteresis", "0.."),
        ({"mode": "auto", "clusterID": "0.0.0.0"}, "spec.routeReflectors.clusterID", "0.0.0.0"),
        ({"mode": "auto", "clusterID": "2001:db8::1"}, "spec.routeReflectors.clusterID", "IPv4"),
        ({"mode": "auto", "candidateSelector": "rr =="}, "spec.routeReflectors.candidateSelector",
         "invalid selector"),
        ({"mode": "auto", "threshold": 5}, "spec.routeReflectors.threshold", "unknown"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_naming_the_key(value: Any, key: str, problem: str) -> None:
    with pytest.raises(ResourceError) as err:
        parse(routeReflectors=value)
    text = str(err.value)
    assert text.startswith("rr.yaml BGPConfiguration/default") and key in text, text
    assert problem in text, text


def test_auto_needs_the_mesh_on_but_off_does_not() -> None:
    with pytest.raises(ResourceError, match="nodeToNodeMeshEnabled: true"):
        parse(nodeToNodeMeshEnabled=False, routeReflectors="auto")
    parse(nodeToNodeMeshEnabled=False, routeReflectors={"mode": "off"})


def test_auto_and_explicit_reflectors_do_not_mix() -> None:
    auto = parse(routeReflectors={"mode": "auto", "nodeThreshold": 4, "count": 2})
    explicit = Node("rr1", route_reflector_cluster_id="1.0.0.1")
    with pytest.raises(ResourceError) as err:
        check_consistency([auto, Node("a"), explicit])
    assert "spec.routeReflectors" in str(err.value) and "Node/rr1" in str(err.value)
    check_consistency([auto, Node("a")])  # no explicit reflector: fine
    check_consistency([parse(routeReflectors={"mode": "off"}), explicit])  # off: fine
    check_consistency([BGPConfiguration("other", route_reflectors=auto.route_reflectors),
                       explicit])  # fmt: skip  # only "default" counts
