"""`podbgp rr -c FILE`: the speaker in route-reflector role (RFC 4456), no kernel writes.

The config is the bgpd YAML; ``routeReflector: {clusterId: ...}`` is required here, and peers
marked ``routeReflectorClient: true`` (or accepted from ``peerRanges``) are the clients.
"""

from __future__ import annotations

from typing import Any

from bgpd.config import LOG_LEVELS, BgpdConfig, ConfigError, load_bgpd_config


def load_rr_config(path: str) -> BgpdConfig:
    config = load_bgpd_config(path)
    if config.route_reflector is None:
        raise ConfigError(path, "routeReflector", "required for podbgp rr (clusterId: A.B.C.D)")
    return config


async def run(config: BgpdConfig) -> None:
    from podbgp.daemon import run as run_speaker

    await run_speaker(config)


def register(verbs: Any) -> None:
    p = verbs.add_parser(
        "rr",
        help="run a dedicated route reflector",
        description=(
            "Run a route reflector (RFC 4456): the bgpd speaker reflecting routes between its "
            "clients. Never writes kernel routes."
        ),
    )
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="rr YAML config")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="override the config's logLevel")
    p.set_defaults(daemon=(load_rr_config, run))
