"""``podbgp node -c node.yaml``: the node agent verb (datastore sync, BGP speaker, felix)."""

from __future__ import annotations

from typing import Any

from bgpd.config import LOG_LEVELS
from podbgp.node.config import NodeConfig, load_node_config


async def run(config: NodeConfig) -> None:
    """The agent, with felix unless ``felix: {enabled: false}`` (the control plane alone)."""
    from podbgp.node.service import run_node
    from podbgp.node.wiring import node_dataplane_factory

    await run_node(config, node_dataplane_factory if config.felix.enabled else None)


def register(verbs: Any) -> None:
    p = verbs.add_parser(
        "node",
        help="run the node agent (register, claim a block, peer, originate)",
        description=(
            "Run the per-node agent: register the node in the datastore, claim its pod address "
            "block, run the BGP speaker with the peers the cluster topology gives (full mesh or "
            "route reflectors), originate the node's blocks, program kernel routes (felix), "
            "serve the REST API."
        ),
    )
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="node YAML config")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="override the config's logLevel")
    p.set_defaults(daemon=(load_node_config, run))
