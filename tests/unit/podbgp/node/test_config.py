"""node.yaml validation and the shipped example configs (configs/node.yaml, configs/cluster/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.configcheck import ConfigError
from podbgp.cluster.cli import load_resources
from podbgp.cluster.consistency import check_consistency
from podbgp.cluster.resources import (
    BGPConfiguration,
    BGPFilter,
    BGPPeer,
    IPPool,
    Node,
)
from podbgp.node.config import load_node_config, resolve_addresses

REPO = Path(__file__).resolve().parents[4]
MINIMAL: dict[str, Any] = {
    "nodeName": "node-1",
    "address": "192.0.2.11/24",
    "datastore": {"type": "etcd", "endpoints": ["http://192.0.2.2:2379"]},
}


def load(tmp_path: Path, data: dict[str, Any]) -> Any:
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_node_config(str(path))


def test_shipped_node_config_is_valid() -> None:
    config = load_node_config(str(REPO / "configs/node.yaml"))
    assert config.node_name == "node-1" and config.address == "192.0.2.11/24"
    assert config.datastore.type == "etcd"
    assert config.datastore.endpoints == ("http://192.0.2.2:2379",)
    assert config.datastore.prefix == "/podbgp/"
    assert config.route_protocol == 80 and config.felix.enabled


def test_shipped_cluster_is_valid_and_consistent() -> None:
    resources = load_resources(str(REPO / "configs/cluster"))
    check_consistency(resources)
    kinds = {type(r) for r in resources}
    assert kinds == {BGPConfiguration, BGPPeer, BGPFilter, IPPool, Node}
    reflectors = [r for r in resources if isinstance(r, Node) and r.route_reflector_cluster_id]
    assert len(reflectors) == 2


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL)
    assert config.api is not None and config.api.listen == "127.0.0.1:9179"
    assert config.router_id is None and config.listen_address is None and config.mtu is None
    assert config.felix.resync_interval == 90
    assert config.datastore.prefix == "/podbgp/"


def test_file_datastore_and_tls(tmp_path: Path) -> None:
    data = {**MINIMAL, "datastore": {"type": "file", "path": str(tmp_path), "pollInterval": 0.5}}
    config = load(tmp_path, data)
    assert config.datastore.path == str(tmp_path) and config.datastore.poll_interval == 0.5
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    tls = {"caFile": str(tmp_path / "ca.pem"), "certFile": str(tmp_path / "cert.pem")}
    tls["keyFile"] = str(tmp_path / "key.pem")
    data = {**MINIMAL, "datastore": {**MINIMAL["datastore"], "tls": tls, "prefix": "/x"}}
    config = load(tmp_path, data)
    assert config.datastore.cert_file == str(tmp_path / "cert.pem")
    assert config.datastore.prefix == "/x/"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"interface": "eth0"}, "address: set exactly one of address and interface"),
        ({"address": "192.0.2.11"}, "address: must be an address with prefix length"),
        ({"nodeName": "Node_1"}, "nodeName: must be a lower-case DNS name"),
        ({"datastore": None}, "datastore: required key is missing"),
        ({"datastore": {"type": "etcd"}}, "datastore.endpoints: required for the etcd datastore"),
        ({"datastore": {"type": "consul"}}, "datastore.type: must be one of etcd, file"),
        (
            {"datastore": {"type": "etcd", "endpoints": ["ftp://x:1"]}},
            "datastore.endpoints[0]: 'ftp://x:1' is not an etcd endpoint",
        ),
        (
            {"datastore": {"type": "etcd", "endpoints": ["http://a:1"], "prefix": "podbgp"}},
            "datastore.prefix: must start with '/'",
        ),
        (
            {"datastore": {"type": "etcd", "endpoints": ["http://a:1"], "tls": {"caFile": "/no"}}},
            "datastore.tls.caFile: cannot read /no",
        ),
        ({"address": "2001:db8::11/64"}, "routerId: required when the node address is IPv6"),
        ({"addressV6": "192.0.2.12/24"}, "addressV6: must be an IPv6 address with prefix length"),
        ({"addressV6": "2001:db8::11"}, "addressV6: must be an address with prefix length"),
        (
            {"address": "2001:db8::11/64", "routerId": "1.1.1.1", "addressV6": "2001:db8::12/64"},
            "addressV6: address is IPv6 already; a node has one address a family",
        ),
        ({"routeProtocol": 2}, "routeProtocol: must be an integer in 5..255"),
        ({"mtu": 100}, "mtu: must be an integer in 576..65535"),
        ({"felix": {"resync": 5}}, "felix.resync: unknown key"),
        ({"asNumber": 64512}, "asNumber: unknown key"),
    ],
)
def test_refusals(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    data = {**MINIMAL, **change}
    if change.get("datastore", 0) is None:
        del data["datastore"]
    with pytest.raises(ConfigError) as err:
        load(tmp_path, data)
    assert message in str(err.value)
    assert str(err.value).startswith(str(tmp_path / "node.yaml"))


def test_a_dual_stack_node_names_both_addresses(tmp_path: Path) -> None:
    config = load(tmp_path, {**MINIMAL, "addressV6": "2001:db8::11/64"})
    assert config.address_v6 == "2001:db8::11/64"
    assert resolve_addresses(config) == ("192.0.2.11/24", "2001:db8::11/64")
    assert resolve_addresses(load(tmp_path, MINIMAL)) == ("192.0.2.11/24",)


def test_graceful_restart_run_file(tmp_path: Path) -> None:
    base = "nodeName: n1\naddress: 192.0.2.11/24\ndatastore: {type: file, path: /tmp/x}\n"
    path = tmp_path / "node.yaml"
    path.write_text(base)
    config = load_node_config(str(path))
    assert (config.run_file, config.selection_deferral_time) == (None, 60)
    path.write_text(base + "gracefulRestart: {runFile: /run/podbgp/n1, selectionDeferralTime: 5}\n")
    config = load_node_config(str(path))
    assert (config.run_file, config.selection_deferral_time) == ("/run/podbgp/n1", 5)
    path.write_text(base + "gracefulRestart: {restartTime: 5}\n")
    with pytest.raises(ConfigError, match=r"gracefulRestart\.restartTime: unknown key"):
        load_node_config(str(path))
