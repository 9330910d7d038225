"""podbgp.cni.plugin / podbgp.cni.main without a kernel: configuration, environment, results,
errors.

Every error path here is reached before the plugin touches the datastore or the kernel, so the
whole invocation (``cni_main.run``) is exercised as the runtime sees it: JSON in, JSON out.
"""

from __future__ import annotations

import io
import ipaddress
import json

import pytest

from podbgp.cni.main import run
from podbgp.cni.plugin import (
    CNI_VERSION,
    GATEWAY,
    GATEWAY_V6,
    HOST_VETH_MAC,
    SUPPORTED_VERSIONS,
    CniCode,
    CniEnv,
    CniError,
    build_result,
    host_veth_name,
    ipam_handle,
    parse_env,
    parse_netconf,
    pod_reference,
)

CONF = {
    "cniVersion": "1.0.0",
    "name": "podbgp",
    "type": "podbgp-cni",
    "nodeName": "node-1",
    "datastore": {"type": "etcd", "endpoints": ["http://127.0.0.1:2379"], "prefix": "/podbgp/"},
}
ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "0123456789abcdef",
    "CNI_NETNS": "/run/netns/pod",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
}


def conf_bytes(**changes: object) -> bytes:
    doc = {**CONF, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def invoke(stdin: bytes, **env: str) -> tuple[int, dict[str, object]]:
    out = io.StringIO()
    status = run(stdin, {**ENV, **env}, out)
    return status, json.loads(out.getvalue())


def test_full_config_parses() -> None:
    conf = parse_netconf(conf_bytes())
    assert conf.cni_version == "1.0.0" and conf.name == "podbgp" and conf.node_name == "node-1"
    assert conf.datastore.type == "etcd"
    assert conf.datastore.endpoints == ("http://127.0.0.1:2379",)
    assert conf.route_protocol == 80 and conf.mtu is None


def test_etcd_client_tls_files_reach_the_datastore_config() -> None:
    tls = {"caFile": "/etc/podbgp/ca.pem", "certFile": "/etc/podbgp/c.pem", "keyFile": "/k.pem"}
    conf = parse_netconf(conf_bytes(datastore={**CONF["datastore"], "tls": tls}))  # type: ignore[dict-item]
    ds = conf.datastore
    assert (ds.ca_file, ds.cert_file, ds.key_file) == (
        "/etc/podbgp/ca.pem",
        "/etc/podbgp/c.pem",
        "/k.pem",
    )
    bad = conf_bytes(datastore={**CONF["datastore"], "tls": {"ca": "x"}})  # type: ignore[dict-item]
    with pytest.raises(CniError):
        parse_netconf(bad)


def test_node_name_defaults_to_the_host_name() -> None:
    assert parse_netconf(conf_bytes(nodeName=None), default_node="worker-7").node_name == "worker-7"


@pytest.mark.parametrize(
    ("stdin", "code"),
    [
        (b"", CniCode.DECODE_FAILURE),
        (b"{not json", CniCode.DECODE_FAILURE),
        (b"\xff\xfe", CniCode.DECODE_FAILURE),
        (b"[1, 2]", CniCode.DECODE_FAILURE),
        (conf_bytes(cniVersion=None), CniCode.INVALID_CONFIG),
        (conf_bytes(cniVersion="9.9.9"), CniCode.INCOMPATIBLE_VERSION),
        (conf_bytes(bogus=1), CniCode.UNSUPPORTED_FIELD),
        (conf_bytes(type="bridge"), CniCode.INVALID_CONFIG),
        (conf_bytes(name=""), CniCode.INVALID_CONFIG),
        (conf_bytes(mtu=10), CniCode.INVALID_CONFIG),
        (conf_bytes(routeProtocol=300), CniCode.INVALID_CONFIG),
        (conf_bytes(datastore={"type": "zookeeper"}), CniCode.INVALID_CONFIG),
        (conf_bytes(datastore={"type": "etcd"}), CniCode.INVALID_CONFIG),
        (conf_bytes(datastore={"type": "file", "colour": "blue"}), CniCode.UNSUPPORTED_FIELD),
    ],
)
def test_bad_configuration_is_a_cni_error_object_never_a_traceback(
    stdin: bytes, code: CniCode
) -> None:
    status, doc = invoke(stdin)
    assert status == 1
    assert doc["code"] == code
    assert isinstance(doc["msg"], str) and doc["msg"]
    assert doc["cniVersion"] in SUPPORTED_VERSIONS


@pytest.mark.parametrize(
    ("env", "code"),
    [
        ({"CNI_COMMAND": "EXPLODE"}, CniCode.INVALID_ENVIRONMENT),
        ({"CNI_COMMAND": ""}, CniCode.INVALID_ENVIRONMENT),
        ({"CNI_CONTAINERID": ""}, CniCode.INVALID_ENVIRONMENT),
        ({"CNI_NETNS": ""}, CniCode.INVALID_ENVIRONMENT),
        ({"CNI_IFNAME": "a-name-far-too-long"}, CniCode.INVALID_ENVIRONMENT),
        ({"CNI_ARGS": "K8S_POD_NAME"}, CniCode.INVALID_ENVIRONMENT),
    ],
)
def test_bad_environment_is_reported_with_code_4(env: dict[str, str], code: CniCode) -> None:
    status, doc = invoke(conf_bytes(), **env)
    assert status == 1 and doc["code"] == code


def test_del_does_not_need_a_namespace_and_args_are_parsed() -> None:
    env = parse_env(
        {
            **ENV,
            "CNI_COMMAND": "DEL",
            "CNI_NETNS": "",
            "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;IgnoreUnknown=1",
        }
    )
    assert env.command == "DEL" and env.netns == ""
    assert env.args == {
        "K8S_POD_NAMESPACE": "default",
        "K8S_POD_NAME": "web-0",
        "IgnoreUnknown": "1",
    }
    assert pod_reference(env) == "default/web-0"


def test_version_answers_with_the_supported_versions() -> None:
    status, doc = invoke(b'{"cniVersion": "0.4.0"}', CNI_COMMAND="VERSION")
    assert status == 0
    assert doc == {"cniVersion": "0.4.0", "supportedVersions": list(SUPPORTED_VERSIONS)}
    status, doc = invoke(b"", CNI_COMMAND="VERSION")
    assert status == 0 and doc["cniVersion"] == CNI_VERSION


def test_host_veth_name_is_stable_short_and_per_attachment() -> None:
    name = host_veth_name("0123456789abcdef", "eth0")
    assert name == host_veth_name("0123456789abcdef", "eth0")
    assert name.startswith("pbg") and len(name) == 14
    assert name != host_veth_name("0123456789abcdef", "eth1")
    assert ipam_handle("0123456789abcdef", "eth0") == "0123456789abcdef.eth0"


def test_result_lists_both_interfaces_the_address_and_the_default_route() -> None:
    conf = parse_netconf(conf_bytes())
    env = CniEnv("ADD", "0123456789abcdef", "/run/netns/pod", "eth0")
    result = build_result(conf, env, ["10.244.1.5"], "aa:aa:aa:aa:aa:aa", "bb:bb:bb:bb:bb:bb")
    assert result == {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": host_veth_name("0123456789abcdef", "eth0"), "mac": "aa:aa:aa:aa:aa:aa"},
            {"name": "eth0", "mac": "bb:bb:bb:bb:bb:bb", "sandbox": "/run/netns/pod"},
        ],
        "ips": [{"address": "10.244.1.5/32", "gateway": GATEWAY, "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {},
    }
    old_conf = parse_netconf(conf_bytes(cniVersion="0.4.0"))
    old = build_result(old_conf, env, ["10.244.1.5"], None, None)
    assert old["cniVersion"] == "0.4.0" and old["ips"][0]["version"] == "4"


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_dual_stack_result_has_both_addresses_gateways_and_default_routes(version: str) -> None:
    conf = parse_netconf(conf_bytes(cniVersion=version))
    env = CniEnv("ADD", "0123456789abcdef", "/run/netns/pod", "eth0")
    result = build_result(conf, env, ["10.244.1.5", "fd00:10::5"], None, None)
    ips = [{k: v for k, v in e.items() if k != "version"} for e in result["ips"]]
    assert ips == [
        {"address": "10.244.1.5/32", "gateway": GATEWAY, "interface": 1},
        {"address": "fd00:10::5/128", "gateway": GATEWAY_V6, "interface": 1},
    ]
    assert result["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    versions = [e.get("version") for e in result["ips"]]
    assert versions == ([None, None] if version == "1.0.0" else ["4", "6"])


def test_the_ipv6_gateway_is_the_host_ends_eui64_link_local_address() -> None:
    # RFC 4291 §2.5.6 / Appendix A: flip the universal/local bit, insert ff:fe in the middle.
    mac = bytes.fromhex(HOST_VETH_MAC.replace(":", ""))
    eui64 = bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe" + mac[3:]
    assert ipaddress.ip_address(b"\xfe\x80" + bytes(6) + eui64) == ipaddress.ip_address(GATEWAY_V6)


def test_error_object_shape() -> None:
    err = CniError(CniCode.TRY_AGAIN, "etcd unreachable", "connect refused")
    assert err.to_json("0.4.0") == {
        "cniVersion": "0.4.0",
        "code": 11,
        "msg": "etcd unreachable",
        "details": "connect refused",
    }
    assert "details" not in CniError(CniCode.IO_FAILURE, "x").to_json()
