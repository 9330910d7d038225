"""bgpd.yaml validation: every class of problem gives one exact line naming file, key and problem.

Pure units (files under tmp_path), plus the real CLI in a subprocess for the exit status.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bgpd.config import (
    ApiConfig,
    BgpdConfig,
    ConfigError,
    GracefulRestartConfig,
    ListenConfig,
    PeerConfig,
    RouteReflectorConfig,
    load_bgpd_config,
    parse_host_port,
)
from bgpd.configcheck import FieldError

REPO = Path(__file__).resolve().parents[3]
HEAD = "asNumber: 64512\nrouterId: 192.0.2.11\n"


def write(tmp_path: Path, text: str, name: str = "bgpd.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def error_of(path: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_bgpd_config(path)
    text = str(info.value)
    assert "\n" not in text
    return text


def peer(extra: str, address: str = "192.0.2.12") -> str:
    lines = "".join(f"    {line}\n" for line in extra.splitlines())
    return f"{HEAD}peers:\n  - address: {address}\n    asNumber: 64512\n{lines}"


# (id, YAML text, expected "key: problem" after "FILE: ")
ERRORS = [
    (
        "yaml-syntax",
        HEAD + "peers: [\n",
        "line 4, column 1: invalid YAML: expected the node content, but found '<stream end>'",
    ),
    (
        "yaml-bad-indent",
        "asNumber: 1\n routerId: x\n",
        "line 2, column 10: invalid YAML: mapping values are not allowed here",
    ),
    (
        "yaml-duplicate-key",
        HEAD + "asNumber: 1\n",
        "line 3, column 1: invalid YAML: duplicate key 'asNumber'",
    ),
    ("empty-file", "", "file is empty; expected a YAML mapping"),
    ("top-not-mapping", "- 1\n- 2\n", "must be a YAML mapping at the top level"),
    (
        "unknown-top-key",
        HEAD + "asnumber: 1\n",
        "asnumber: unknown key; expected one of "
        "asNumber, routerId, listen, api, gracefulRestart, logLevel, peers, originate, "
        "routeReflector, peerRanges, filters, ebgpRequiresPolicy, shutdown",
    ),
    (
        "unknown-peer-key",
        peer("hold: 90"),
        "peers[0].hold: unknown key; expected one of "
        "address, asNumber, port, passive, password, holdTime, keepaliveTime, description, "
        "sourceAddress, routeReflectorClient, ttlSecurity, filters, maxPrefixes, localASNumber, "
        "nextHopMode, bfd, longLivedStaleTime, interface, extendedNextHop",
    ),
    (
        "unknown-listen-key",
        HEAD + "listen: {addr: 0.0.0.0}\n",
        "listen.addr: unknown key; expected one of address, port",
    ),
    (
        "non-string-key",
        HEAD + "5: x\n",
        "5: unknown key; expected one of asNumber, routerId, listen, api, gracefulRestart, "
        "logLevel, peers, originate, routeReflector, peerRanges, filters, ebgpRequiresPolicy, "
        "shutdown",
    ),
    (
        "unhashable-key",
        HEAD + "? [a, b]\n: 1\n",
        "line 3, column 3: invalid YAML: found unhashable key",
    ),
    ("missing-asNumber", "routerId: 192.0.2.11\n", "asNumber: required key is missing"),
    ("missing-routerId", "asNumber: 64512\n", "routerId: required key is missing"),
    (
        "missing-peer-address",
        HEAD + "peers:\n  - asNumber: 1\n",
        "peers[0].address: required key is missing",
    ),
    (
        "missing-peer-as",
        HEAD + "peers:\n  - address: 192.0.2.12\n",
        "peers[0].asNumber: required key is missing",
    ),
    (
        "asn-zero",
        "asNumber: 0\nrouterId: 192.0.2.11\n",
        "asNumber: must be an integer in 1..4294967295",
    ),
    (
        "asn-too-big",
        "asNumber: 4294967296\nrouterId: 192.0.2.11\n",
        "asNumber: must be an integer in 1..4294967295",
    ),
    (
        "asn-string",
        "asNumber: '64512'\nrouterId: 192.0.2.11\n",
        "asNumber: must be an integer in 1..4294967295",
    ),
    (
        "peer-asn",
        HEAD + "peers:\n  - {address: 192.0.2.12, asNumber: 1}\n"
        "  - {address: 192.0.2.13, asNumber: -5}\n",
        "peers[1].asNumber: must be an integer in 1..4294967295",
    ),
    ("router-id-bad", "asNumber: 1\nrouterId: 192.0.2\n", "routerId: must be an IPv4 address"),
    ("router-id-v6", "asNumber: 1\nrouterId: '2001:db8::1'\n", "routerId: must be an IPv4 address"),
    ("router-id-zero", "asNumber: 1\nrouterId: 0.0.0.0\n", "routerId: must not be 0.0.0.0"),
    ("listen-not-mapping", HEAD + "listen: 0.0.0.0\n", "listen: must be a mapping"),
    (
        "listen-address",
        HEAD + "listen: {address: localhost}\n",
        "listen.address: must be an IPv4 or IPv6 address",
    ),
    (
        "listen-port",
        HEAD + "listen: {port: 65536}\n",
        "listen.port: must be an integer in 0..65535",
    ),
    (
        "listen-port-bool",
        HEAD + "listen: {port: true}\n",
        "listen.port: must be an integer in 0..65535",
    ),
    (
        "api-no-port",
        HEAD + "api: {listen: 127.0.0.1}\n",
        "api.listen: must be host:port, like 127.0.0.1:9179",
    ),
    (
        "api-v6-brackets",
        HEAD + "api: {listen: '::1:9179'}\n",
        "api.listen: must write an IPv6 host in brackets, like [::1]:9179",
    ),
    (
        "api-port",
        HEAD + "api: {listen: '127.0.0.1:70000'}\n",
        "api.listen: must end with a port in 0..65535",
    ),
    (
        "gr-enabled",
        HEAD + "gracefulRestart: {enabled: 1}\n",
        "gracefulRestart.enabled: must be true or false",
    ),
    (
        "gr-restart-time",
        HEAD + "gracefulRestart: {restartTime: 4096}\n",
        "gracefulRestart.restartTime: must be an integer in 1..4095",
    ),
    (
        "log-level",
        HEAD + "logLevel: verbose\n",
        "logLevel: must be one of debug, info, warning, error",
    ),
    ("peers-not-list", HEAD + "peers: {address: 192.0.2.12}\n", "peers: must be a list"),
    ("peer-not-mapping", HEAD + "peers: [192.0.2.12]\n", "peers[0]: must be a mapping"),
    (
        "peer-address",
        peer("", address="192.0.2.300"),
        "peers[0].address: must be an IPv4 or IPv6 address",
    ),
    (
        "peer-address-multicast",
        peer("", address="224.0.0.5"),
        "peers[0].address: must be a unicast IP address",
    ),
    (
        "peer-duplicate",
        HEAD + "peers:\n  - {address: '2001:db8::2', asNumber: 1}\n"
        "  - {address: '2001:DB8:0::2', asNumber: 2}\n",
        "peers[1].address: duplicate peer address; also in peers[0]",
    ),
    ("peer-port", peer("port: 0"), "peers[0].port: must be an integer in 1..65535"),
    ("peer-passive", peer("passive: 'no'"), "peers[0].passive: must be true or false"),
    (
        "password-empty",
        peer("password: ''"),
        "peers[0].password: must be a string of 1..80 characters",
    ),
    (
        "password-long",
        peer("password: " + "x" * 81),
        "peers[0].password: must be a string of 1..80 characters",
    ),
    ("password-number", peer("password: 1234"), "peers[0].password: must be a string"),
    ("hold-time", peer("holdTime: 2"), "peers[0].holdTime: must be 0 or an integer in 3..65535"),
    (
        "keepalive-not-below-hold",
        peer("holdTime: 9\nkeepaliveTime: 9"),
        "peers[0].keepaliveTime: must be less than holdTime (9)",
    ),
    (
        "keepalive-default-hold",
        peer("keepaliveTime: 90"),
        "peers[0].keepaliveTime: must be less than holdTime (90)",
    ),
    (
        "keepalive-zero",
        peer("keepaliveTime: 0"),
        "peers[0].keepaliveTime: must be an integer in 1..65535",
    ),
    (
        "source-family",
        peer("sourceAddress: '2001:db8::1'"),
        "peers[0].sourceAddress: must be an IPv4 address, like the peer address",
    ),
    ("description", peer("description: [a]"), "peers[0].description: must be a string"),
    ("originate-not-list", HEAD + "originate: 10.244.1.0/24\n", "originate: must be a list"),
    (
        "originate-no-length",
        HEAD + "originate: [10.244.1.0]\n",
        "originate[0]: must be an IP prefix in CIDR form, like 10.244.1.0/24",
    ),
    (
        "originate-host-bits",
        HEAD + "originate: [10.244.1.0/24, 10.244.2.7/24]\n",
        "originate[1]: host bits are set; did you mean 10.244.2.0/24?",
    ),
    (
        "originate-duplicate",
        HEAD + "originate: ['2001:db8::/64', '2001:DB8::/64']\n",
        "originate[1]: duplicate of originate[0]",
    ),
    (
        "bfd-multiplier",
        peer("bfd: {multiplier: 0}"),
        "peers[0].bfd.multiplier: must be an integer in 1..255",
    ),
    (
        "bfd-min-rx",
        peer("bfd: {minRx: 0}"),
        "peers[0].bfd.minRx: must be an integer in 1..60000",
    ),
    (
        "bfd-unknown-key",
        peer("bfd: {interval: 100}"),
        "peers[0].bfd.interval: unknown key; expected one of enabled, minRx, minTx, multiplier",
    ),
    (
        "bfd-not-a-mapping",
        peer("bfd: yes"),
        "peers[0].bfd: must be a mapping",
    ),
    (
        "rr-cluster-id",
        HEAD + "routeReflector: {clusterId: 1}\n",
        "routeReflector.clusterId: must be an IPv4 address (a string)",
    ),
    (
        "filter-bad-cidr",
        HEAD + "filters: [{name: f, exportV4: [{cidr: 10.0.0.1/8, matchOperator: In, "
        "action: Accept}]}]\n",
        "filters[0].exportV4[0].cidr: 10.0.0.1/8 has host bits set (did you mean 10.0.0.0/8?)",
    ),
    (
        "filter-ops-on-reject",
        HEAD + "filters: [{name: f, importV4: [{action: Reject, operations: "
        "[{setPriority: {value: 1}}]}]}]\n",
        "filters[0].importV4[0].operations: only allowed with action Accept",
    ),
    (
        "filter-interface-refused",
        HEAD + "filters: [{name: f, exportV4: [{interface: 'eth*', action: Accept}]}]\n",
        "filters[0].exportV4[0].interface: not supported: podbgp's BGP routes carry no interface",
    ),
    (
        "filter-set-priority-refused",
        HEAD + "filters: [{name: f, importV6: [{action: Accept, operations: "
        "[{setPriority: {value: 5}}]}]}]\n",
        "filters[0].importV6[0].operations[0].setPriority: not supported: podbgp carries no "
        "route priority (kernel metric) yet",
    ),
    (
        "filter-duplicate-name",
        HEAD + "filters: [{name: f}, {name: f}]\n",
        "filters[1].name: duplicate of filters[0]",
    ),
    ("filters-not-list", HEAD + "filters: {name: f}\n", "filters: must be a list of filters"),
    (
        "peer-unknown-filter",
        HEAD + "filters: [{name: a}]\npeers: [{address: 192.0.2.1, asNumber: 65001, "
        "filters: [a, b]}]\n",
        "peers[0].filters[1]: no filter named 'b' (filters: a)",
    ),
    (
        "peer-filters-not-names",
        peer("filters: a"),
        "peers[0].filters: must be a list of filter names",
    ),
    (
        "ebgp-requires-policy",
        HEAD + "ebgpRequiresPolicy: 1\n",
        "ebgpRequiresPolicy: must be true or false",
    ),
    (
        "rr-missing-cluster-id",
        HEAD + "routeReflector: {}\n",
        "routeReflector.clusterId: required key is missing",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_error_is_one_exact_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}: {expected}"


def test_error_names_file_key_and_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "asNumber: 0\nrouterId: 192.0.2.11\n")
    with pytest.raises(ConfigError) as info:
        load_bgpd_config(path)
    assert (info.value.file, info.value.key) == (path, "asNumber")
    assert info.value.problem == "must be an integer in 1..4294967295"


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    assert error_of(path) == f"{path}: cannot read file: No such file or directory"


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    assert error_of(str(tmp_path)) == f"{tmp_path}: cannot read file: Is a directory"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bgpd.yaml"
    path.write_bytes(b"asNumber: 1\nrouterId: \xff\xfe\n")
    assert error_of(str(path)) == f"{path}: cannot read file: not UTF-8 text"


def test_path_through_a_file(tmp_path: Path) -> None:
    # The OS's reason is passed on in words (ENOTDIR here; EACCES reads the same way).
    path = str(Path(write(tmp_path, HEAD)) / "bgpd.yaml")
    assert error_of(path) == f"{path}: cannot read file: Not a directory"


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load_bgpd_config(write(tmp_path, HEAD))
    assert config == BgpdConfig(as_number=64512, router_id="192.0.2.11")
    assert config.listen == ListenConfig("0.0.0.0", 179)
    assert config.api == ApiConfig("127.0.0.1", 9179)
    assert config.graceful_restart == GracefulRestartConfig(True, 120)
    assert (config.log_level, config.peers, config.originate) == ("info", (), ())
    assert config.route_reflector is None


def test_full_config(tmp_path: Path) -> None:
    text = HEAD + (
        "listen: {address: '::', port: 0}\n"
        "api: {listen: '[::1]:9180'}\n"
        "gracefulRestart: {enabled: false, restartTime: 4095}\n"
        "logLevel: debug\n"
        "peers:\n"
        "  - address: '2001:DB8::12'\n"
        "    asNumber: 4200000000\n"
        "    port: 1179\n"
        "    passive: true\n"
        "    password: s3cret\n"
        "    holdTime: 0\n"
        "    keepaliveTime: 10\n"
        "    description: upstream\n"
        "    sourceAddress: '2001:db8::11'\n"
        "    routeReflectorClient: true\n"
        "  - {address: 192.0.2.13, asNumber: 64512, holdTime: 3}\n"
        "originate: [10.244.1.0/24, '2001:db8:1::/48']\n"
        "routeReflector: {clusterId: 1.1.1.1}\n"
    )
    config = load_bgpd_config(write(tmp_path, text))
    assert config.listen == ListenConfig("::", 0)
    assert config.api == ApiConfig("::1", 9180)
    assert config.api.listen == "[::1]:9180"
    assert config.graceful_restart == GracefulRestartConfig(False, 4095)
    assert config.log_level == "debug"
    ebgp, ibgp = config.peers
    assert ebgp == PeerConfig(
        address="2001:db8::12",
        as_number=4200000000,
        port=1179,
        passive=True,
        password="s3cret",
        hold_time=0,
        keepalive_time=10,
        description="upstream",
        source_address="2001:db8::11",
        route_reflector_client=True,
    )
    assert "s3cret" not in repr(config)
    assert ebgp.as_number != config.as_number and ibgp.as_number == config.as_number
    assert (ibgp.hold_time, ibgp.keepalive_time) == (3, None)  # the FSM derives keepalive 1
    assert config.originate == ("10.244.1.0/24", "2001:db8:1::/48")
    assert config.route_reflector == RouteReflectorConfig("1.1.1.1")


@pytest.mark.parametrize("text", ["api: null\n", "api: {listen: null}\n"])
def test_api_null_disables(tmp_path: Path, text: str) -> None:
    assert load_bgpd_config(write(tmp_path, HEAD + text)).api is None


def test_example_configs_load() -> None:
    mine = load_bgpd_config(str(REPO / "configs/bgpd.yaml"))
    other = load_bgpd_config(str(REPO / "configs/bgpd-peer.yaml"))
    assert (mine.as_number, mine.router_id, mine.originate) == (
        64512,
        "192.0.2.11",
        ("10.244.1.0/24",),
    )
    assert mine.api == ApiConfig("127.0.0.1", 9179)
    assert [p.address for p in mine.peers] == ["192.0.2.12"]
    # The two examples describe the two ends of one session.
    assert [p.address for p in other.peers] == [mine.router_id]
    assert other.router_id == mine.peers[0].address
    assert other.as_number == mine.peers[0].as_number
    assert other.api is not None and other.api != mine.api


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9179", ("127.0.0.1", 9179)),
        ("[::1]:9179", ("::1", 9179)),
        ("[2001:DB8::1]:0", ("2001:db8::1", 0)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize(
    "text", ["9179", ":9179", "127.0.0.1:", "[::1]", "[nope]:1", "1.2.3:4", "host:x", "a b:1"]
)
def test_parse_host_port_rejects(text: str) -> None:
    with pytest.raises(FieldError):
        parse_host_port(text)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "podbgp", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )


def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, peer("holdTime: 1"), name="bad.yaml")
    result = run_cli("bgpd", "-c", path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"{path}: peers[0].holdTime: must be 0 or an integer in 3..65535\n"


def test_cli_missing_config_exits_2(tmp_path: Path) -> None:
    path = str(tmp_path / "missing.yaml")
    result = run_cli("bgpd", "-c", path)
    assert result.returncode == 2
    assert result.stderr == f"{path}: cannot read file: No such file or directory\n"


def test_filters_resolve_in_peer_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEAD + "ebgpRequiresPolicy: true\n"
        "filters:\n"
        "  - {name: a, exportV4: [{cidr: 10.244.0.0/16, matchOperator: In, action: Accept}]}\n"
        "  - {name: b, importV6: [{action: Reject}]}\n"
        "peers: [{address: 192.0.2.1, asNumber: 65001, filters: [b, a]}]\n",
    )
    config = load_bgpd_config(path)
    assert config.ebgp_requires_policy is True
    assert [f.name for f in config.filters] == ["a", "b"]
    assert [f.name for f in config.peers[0].filters] == ["b", "a"]


def test_peer_bfd_defaults_and_values(tmp_path: Path) -> None:
    from bgpd.configcheck import BfdOptions

    config = load_bgpd_config(write(tmp_path, peer("bfd: {}")))
    assert config.peers[0].bfd == BfdOptions(
        enabled=True, min_rx_ms=300, min_tx_ms=300, multiplier=3
    )
    text = peer("bfd: {enabled: true, minRx: 100, minTx: 150, multiplier: 5}")
    config = load_bgpd_config(write(tmp_path, text))
    assert config.peers[0].bfd == BfdOptions(True, 100, 150, 5)
    assert load_bgpd_config(write(tmp_path, peer(""))).peers[0].bfd is None


def test_peer_range_bfd(tmp_path: Path) -> None:
    from bgpd.configcheck import BfdOptions

    text = HEAD + "peerRanges:\n  - {range: 192.0.2.0/24, asNumber: 64512, bfd: {minRx: 100}}\n"
    config = load_bgpd_config(write(tmp_path, text))
    assert config.peer_ranges[0].bfd == BfdOptions(True, 100, 300, 3)
    text = HEAD + "peerRanges:\n  - {range: 192.0.2.0/24, asNumber: 64512, bfd: {minTx: x}}\n"
    assert error_of(write(tmp_path, text)).endswith(
        "peerRanges[0].bfd.minTx: must be an integer in 1..60000"
    )


def test_shutdown_section(tmp_path: Path) -> None:
    from bgpd.config import ShutdownConfig

    assert load_bgpd_config(write(tmp_path, HEAD)).shutdown == ShutdownConfig()
    text = HEAD + "shutdown: {mode: drain, drainTime: 5, message: bye}\n"
    assert load_bgpd_config(write(tmp_path, text)).shutdown == ShutdownConfig("drain", 5, "bye")
    text = HEAD + "shutdown: {mode: now}\n"
    assert error_of(write(tmp_path, text)).endswith(
        "shutdown.mode: must be one of gracefulRestart, drain"
    )
    text = HEAD + f"shutdown: {{message: {'é' * 128}}}\n"
    assert error_of(write(tmp_path, text)).endswith(
        "shutdown.message: must be text of at most 255 UTF-8 octets (RFC 9003)"
    )


def test_unnumbered_peer_and_extended_next_hop(tmp_path: Path) -> None:
    text = HEAD + (
        "peers:\n"
        "  - {interface: eth0, asNumber: 65001}\n"
        "  - {interface: eth1, asNumber: 65002, extendedNextHop: false}\n"
        "  - {address: '2001:db8::2', asNumber: 65003, extendedNextHop: true}\n"
        "  - {address: 192.0.2.2, asNumber: 65004}\n"
    )
    peers = load_bgpd_config(write(tmp_path, text)).peers
    assert [(p.address, p.interface, p.extended_next_hop) for p in peers] == [
        ("", "eth0", True),  # on by default for unnumbered peers
        ("", "eth1", False),
        ("2001:db8::2", None, True),
        ("192.0.2.2", None, False),
    ]
    assert [p.name for p in peers] == ["%eth0", "%eth1", "2001:db8::2", "192.0.2.2"]


@pytest.mark.parametrize(
    ("peers", "expected"),
    [
        (
            "[{interface: eth0, address: 192.0.2.2, asNumber: 1}]",
            "peers[0].interface: give either address or interface, not both",
        ),
        ("[{asNumber: 1}]", "peers[0].address: required key is missing"),
        (
            "[{interface: eth0/1, asNumber: 1}]",
            "peers[0].interface: must be an interface name (no '/', ':', '%' or whitespace)",
        ),
        (
            "[{interface: averyveryverylongname, asNumber: 1}]",
            "peers[0].interface: must be an interface name of 1..15 characters",
        ),
        (
            "[{interface: eth0, asNumber: 1, sourceAddress: 192.0.2.1}]",
            "peers[0].sourceAddress: not with interface: the link-local address is used",
        ),
        (
            "[{interface: eth0, asNumber: 1}, {interface: eth0, asNumber: 2}]",
            "peers[1].interface: duplicate peer interface; also in peers[0]",
        ),
        (
            "[{interface: eth0, asNumber: 1, bfd: {}}]",
            "peers[0].bfd: not supported on unnumbered (interface) peers yet",
        ),
        (
            "[{interface: eth0, asNumber: 1, extendedNextHop: yes please}]",
            "peers[0].extendedNextHop: must be true or false",
        ),
    ],
)
def test_unnumbered_peer_errors(tmp_path: Path, peers: str, expected: str) -> None:
    path = write(tmp_path, HEAD + f"peers: {peers}\n")
    assert error_of(path) == f"{path}: {expected}"
