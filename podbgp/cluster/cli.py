"""Verbs for the cluster datastore: ``apply``, ``get``, ``delete``, ``ipam show|check``.

Registered into ``podbgp`` through :func:`register`. The datastore is etcd when
``--etcd-endpoints`` or ``$PODBGP_ETCD_ENDPOINTS`` names endpoints, else the file datastore in
``--datastore-path`` (``$PODBGP_DATASTORE_PATH``, default ``/etc/podbgp/cluster``). Exit status:
0 success; 1 the datastore is unreachable or the resource does not exist; 2 a usage error or an
invalid resource (the reason is printed, nothing is written); 3 ``ipam check`` found problems it
did not fix. Implements no RFC.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from podbgp.cluster import operations
from podbgp.cluster.datastore import (
    DEFAULT_FILE_PATH,
    DEFAULT_PREFIX,
    Datastore,
    DatastoreConfig,
    DatastoreError,
    NodeInfo,
    open_datastore,
)
from podbgp.cluster.resources import (
    KINDS,
    Node,
    Resource,
    ResourceError,
    kind_of,
    parse_resource,
    to_dict,
)

ENV_ENDPOINTS = "PODBGP_ETCD_ENDPOINTS"
ENV_PREFIX = "PODBGP_ETCD_PREFIX"
ENV_CA, ENV_CERT, ENV_KEY = "PODBGP_ETCD_CA_FILE", "PODBGP_ETCD_CERT_FILE", "PODBGP_ETCD_KEY_FILE"
ENV_PATH = "PODBGP_DATASTORE_PATH"


class UsageError(Exception):
    """Bad input from the user (exit 2)."""


# --- datastore selection ----------------------------------------------------------------------


def datastore_config(args: argparse.Namespace) -> DatastoreConfig:
    endpoints = [e.strip() for e in (args.etcd_endpoints or "").split(",") if e.strip()]
    if endpoints:
        return DatastoreConfig(
            type="etcd",
            endpoints=tuple(endpoints),
            prefix=args.etcd_prefix,
            ca_file=args.etcd_ca_file,
            cert_file=args.etcd_cert_file,
            key_file=args.etcd_key_file,
        )
    return DatastoreConfig(type="file", path=args.datastore_path)


def _add_datastore_options(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    g = p.add_argument_group("datastore")
    g.add_argument(
        "--etcd-endpoints",
        default=env(ENV_ENDPOINTS),
        metavar="URL[,URL]",
        help=f"etcd endpoints (default: ${ENV_ENDPOINTS}; unset: the file datastore)",
    )
    g.add_argument(
        "--etcd-prefix",
        default=env(ENV_PREFIX, DEFAULT_PREFIX),
        metavar="PREFIX",
        help=f"key prefix in etcd (default: ${ENV_PREFIX} or {DEFAULT_PREFIX})",
    )
    g.add_argument("--etcd-ca-file", default=env(ENV_CA), metavar="FILE", help="CA bundle (PEM)")
    g.add_argument("--etcd-cert-file", default=env(ENV_CERT), metavar="FILE", help="client cert")
    g.add_argument("--etcd-key-file", default=env(ENV_KEY), metavar="FILE", help="client key")
    g.add_argument(
        "--datastore-path",
        default=env(ENV_PATH, DEFAULT_FILE_PATH),
        metavar="DIR",
        help=f"file datastore directory (default: ${ENV_PATH} or {DEFAULT_FILE_PATH})",
    )


def _with_store(args: argparse.Namespace, work: Callable[[Datastore], Awaitable[int]]) -> int:
    """Run ``work`` against the selected datastore; map failures to exit statuses."""

    async def main() -> int:
        store = open_datastore(datastore_config(args))
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except (ResourceError, UsageError) as exc:
        print(f"podbgp {args.verb}: {exc}", file=sys.stderr)
        return 2
    except DatastoreError as exc:
        hint = ""
        if datastore_config(args).type == "file":
            hint = f" (file datastore; for etcd set --etcd-endpoints or ${ENV_ENDPOINTS})"
        print(f"podbgp {args.verb}: datastore error: {exc}{hint}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a malformed endpoint URL
        print(f"podbgp {args.verb}: {exc}", file=sys.stderr)
        return 2


def _files(path: str) -> list[tuple[str, str]]:
    """(name, text) of the resource files at ``path`` (a file, a directory, or '-')."""
    if path == "-":
        return [("<stdin>", sys.stdin.read())]
    p = Path(path)
    if p.is_dir():
        chosen = sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml", ".json"))
        if not chosen:
            raise UsageError(f"{path}: no .yaml, .yml or .json files in the directory")
    else:
        chosen = [p]
    out = []
    for f in chosen:
        try:
            out.append((str(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{f}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return out


def load_resources(path: str) -> list[Resource]:
    """Every resource in ``path``, validated; raises ResourceError/UsageError on the first bad
    one (so nothing is applied)."""
    resources: list[Resource] = []
    seen: dict[str, str] = {}
    for name, text in _files(path):
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            raise UsageError(f"{name}: invalid YAML: {' '.join(str(exc).split())}") from None
        for i, doc in enumerate(docs):
            if doc is None:
                continue
            source = f"{name} (document {i + 1})" if len(docs) > 1 else name
            res = parse_resource(doc, source)
            ident = f"{res.KIND}/{res.name}"
            if ident in seen:
                raise UsageError(f"{source}: {ident} is also defined in {seen[ident]}")
            seen[ident] = source
            resources.append(res)
    if not resources:
        raise UsageError(f"{path}: no resources found")
    return resources


def cmd_apply(args: argparse.Namespace) -> int:
    try:
        resources = load_resources(args.filename)
    except (ResourceError, UsageError) as exc:
        print(f"podbgp apply: {exc}", file=sys.stderr)
        return 2

    async def work(store: Datastore) -> int:
        results, released = await operations.apply_resources(store, resources)
        print(f"Successfully applied {len(results)} resource(s):")
        for res, action in results:
            print(f"  {res.KIND}/{res.name} {action}")
        _print_released(released)
        return 0

    return _with_store(args, work)


# --- get --------------------------------------------------------------------------------------


def _node_documents(nodes: list[NodeInfo], declared: dict[str, Node]) -> list[dict[str, Any]]:
    docs = []
    for info in nodes:
        res = declared.get(info.name) or Node(info.name)
        doc = to_dict(res)
        if info.registered:
            doc["status"] = info.to_json()
        docs.append(doc)
    return docs


def _reflectors_cell(rr: dict[str, Any] | None) -> str:
    """``routeReflectors`` in a few words: ``auto: 3 from 100 nodes`` (canonical form)."""
    if not rr or rr.get("mode") != "auto":
        return "-" if not rr else "off"
    return f"auto: {rr['count']} from {rr['nodeThreshold']} nodes"


def _table_rows(kind: str, docs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    def cell(value: Any) -> str:
        if value is None or value == [] or value == "":
            return "-"
        if isinstance(value, list):
            return ",".join(map(str, value))
        return str(value)

    if kind == "IPPool":
        head = ["NAME", "CIDR", "BLOCK SIZE", "IPIP", "VXLAN", "NAT", "DISABLED", "SELECTOR"]
        keys = ["cidr", "blockSize", "ipipMode", "vxlanMode", "natOutgoing", "disabled"]
        rows = [
            [
                d["metadata"]["name"],
                *(cell(d["spec"].get(k)) for k in keys),
                cell(d["spec"].get("nodeSelector")),
            ]
            for d in docs
        ]
    elif kind == "BGPPeer":
        head = ["NAME", "PEER ADDRESS", "PEER SELECTOR", "NODE", "ASN"]
        rows = [
            [
                d["metadata"]["name"],
                cell(d["spec"].get("peerIP")),
                cell(d["spec"].get("peerSelector")),
                cell(d["spec"].get("node") or d["spec"].get("nodeSelector") or "(global)"),
                cell(d["spec"].get("asNumber")),
            ]
            for d in docs
        ]
    elif kind == "BGPFilter":
        lists = ("exportV4", "importV4", "exportV6", "importV6")
        head = ["NAME", *(f"{k.upper()} RULES" for k in lists)]
        rows = [[d["metadata"]["name"], *(str(len(d["spec"].get(k, []))) for k in lists)]
                for d in docs]  # fmt: skip
    elif kind == "BGPConfiguration":
        head = ["NAME", "ASN", "NODE-TO-NODE MESH", "LISTEN PORT", "ROUTE REFLECTORS"]
        rows = [
            [
                d["metadata"]["name"],
                cell(d["spec"].get("asNumber")),
                "on" if d["spec"].get("nodeToNodeMeshEnabled") else "off",
                cell(d["spec"].get("listenPort")),
                _reflectors_cell(d["spec"].get("routeReflectors")),
            ]
            for d in docs
        ]
    else:
        head = ["NAME", "ADDRESSES", "ASN", "ROUTER ID", "RR CLUSTER ID", "BLOCKS", "API"]
        rows = []
        for d in docs:
            st, spec = d.get("status") or {}, d["spec"]
            rows.append(
                [
                    d["metadata"]["name"],
                    cell(st.get("addresses") or spec.get("addresses")),
                    cell(spec.get("asNumber") or st.get("asNumber")),
                    cell(st.get("routerId")),
                    cell(spec.get("routeReflectorClusterID"))
                    if spec.get("routeReflectorClusterID") or not st.get("electedReflector")
                    else "elected",
                    cell(st.get("blocks") or spec.get("blocks")),
                    cell(st.get("apiAddress")),
                ]
            )
    return head, rows


def _print_docs(docs: list[dict[str, Any]], single: bool, output: str, kind: str) -> None:
    from podbgp.ops.client import render_table

    if output == "json":
        print(json.dumps(docs[0] if single else docs, indent=2))
    elif output == "yaml":
        print(yaml.safe_dump_all(docs, sort_keys=False, explicit_start=len(docs) > 1), end="")
    else:
        head, rows = _table_rows(kind, docs)
        print(render_table(head, rows))


def _canonical_kind(text: str) -> str:
    kind = kind_of(text)
    if kind is None:
        raise UsageError(f"unknown kind {text!r}; expected one of {', '.join(KINDS)}")
    return kind


def cmd_get(args: argparse.Namespace) -> int:
    try:
        kind = _canonical_kind(args.kind)
    except UsageError as exc:
        print(f"podbgp get: {exc}", file=sys.stderr)
        return 2

    async def work(store: Datastore) -> int:
        if kind == "Node":
            nodes = await store.list_nodes()
            declared = {
                r.name: r for r in await store.list_resources("Node") if isinstance(r, Node)
            }
            docs = _node_documents(nodes, declared)
        else:
            docs = [to_dict(r) for r in await store.list_resources(kind)]
        if args.name is not None:
            docs = [d for d in docs if d["metadata"]["name"] == args.name]
            if not docs:
                print(f"podbgp get: {kind}/{args.name} not found", file=sys.stderr)
                return 1
        if not docs and args.output == "table":
            print(f"No {kind} resources.")
            return 0
        _print_docs(docs, args.name is not None, args.output, kind)
        return 0

    return _with_store(args, work)


# --- delete -----------------------------------------------------------------------------------


def cmd_delete(args: argparse.Namespace) -> int:
    try:
        kind = _canonical_kind(args.kind)
    except UsageError as exc:
        print(f"podbgp delete: {exc}", file=sys.stderr)
        return 2

    async def work(store: Datastore) -> int:
        released = await operations.released_by_delete(store, kind, args.name)
        if released is None:
            print(f"podbgp delete: {kind}/{args.name} not found", file=sys.stderr)
            return 1
        print(f"Successfully deleted {kind}/{args.name}")
        _print_released(released)
        return 0

    return _with_store(args, work)


def _print_released(blocks: list[str]) -> None:
    if blocks:
        print(f"Released {len(blocks)} block(s): {', '.join(blocks)}")


# --- ipam show --------------------------------------------------------------------------------


def cmd_ipam_show(args: argparse.Namespace) -> int:
    from podbgp.cluster import ipam
    from podbgp.ops.client import render_table

    async def work(store: Datastore) -> int:
        usage = await ipam.pool_usage(store)
        blocks = await ipam.all_blocks(store)
        if args.output == "json":
            data: dict[str, Any] = {
                "pools": [
                    {
                        "name": u.pool.name,
                        "cidr": u.pool.cidr,
                        "blockSize": u.pool.block_size,
                        "blocksTotal": u.blocks_total,
                        "blocksInUse": len(u.blocks),
                        "addressesInUse": u.addresses_in_use,
                    }
                    for u in usage
                ],
            }
            if args.show_blocks:
                data["blocks"] = [
                    {**b.to_json(), "addressesInUse": len(b.allocations)} for b in blocks
                ]
            print(json.dumps(data, indent=2))
            return 0
        rows = [
            [
                u.pool.name,
                u.pool.cidr,
                f"/{u.pool.block_size}",
                f"{len(u.blocks)} of {u.blocks_total}",
                str(u.addresses_in_use),
            ]
            for u in usage
        ]
        print(render_table(["POOL", "CIDR", "BLOCK SIZE", "BLOCKS IN USE", "IPS IN USE"], rows))
        if args.show_blocks:
            brows = [[b.cidr, b.pool, b.node, str(len(b.allocations))] for b in blocks]
            print()
            print(render_table(["BLOCK", "POOL", "NODE", "IPS IN USE"], brows))
        return 0

    return _with_store(args, work)


# --- ipam check -------------------------------------------------------------------------------

EXIT_PROBLEMS = 3  # ipam check: problems found and not (all) fixed


def cmd_ipam_check(args: argparse.Namespace) -> int:
    from podbgp.cluster import ipam_check
    from podbgp.ops.client import render_table

    async def work(store: Datastore) -> int:
        report = await ipam_check.check(store)
        if args.fix and report.findings:
            report = await ipam_check.fix(store, report)
        status = EXIT_PROBLEMS if (report.unresolved if args.fix else report.findings) else 0
        if args.output == "json":
            data = {
                "nodes": report.nodes,
                "blocks": report.blocks,
                "handles": report.handles,
                "findings": [f.to_json() for f in report.findings],
            }
            print(json.dumps(data, indent=2))
            return status
        print(
            f"Checked {report.nodes} node(s), {report.blocks} block(s), {report.handles} handle(s)."
        )
        if not report.findings:
            print("No problems found.")
            return 0
        head = ["PROBLEM", "SUBJECT", "NODE", "REASON"] + (["ACTION"] if args.fix else [])
        rows = [
            [
                f.problem,
                f"{f.subject} ({f.handle})" if f.handle else f.subject,
                f.node,
                f.reason,
                *([f.action] if args.fix else []),
            ]
            for f in report.findings
        ]
        print(render_table(head, rows))
        if not args.fix:
            print(f"{len(rows)} problem(s) found; --fix releases them.")
        elif report.unresolved:
            print(f"{len(report.unresolved)} of {len(rows)} changed while being fixed; run again.")
        else:
            print(f"Fixed {len(rows)} problem(s).")
        return status

    return _with_store(args, work)


# --- registration -----------------------------------------------------------------------------


def register(verbs: Any) -> None:
    """Add ``apply``, ``get``, ``delete`` and ``ipam`` to the podbgp verbs."""
    _register_resource_verbs(verbs)
    _register_ipam(verbs)


def _register_resource_verbs(verbs: Any) -> None:
    p = verbs.add_parser(
        "apply",
        help="create or replace cluster resources",
        description=(
            "Create or replace the resources in FILE (or every .yaml/.yml/.json file in a "
            "directory; '-' reads stdin). All are validated first: an invalid one is refused "
            "with the reason and nothing is written (exit 2)."
        ),
    )
    p.add_argument("-f", "--filename", required=True, metavar="FILE|DIR", help="resources")
    _add_datastore_options(p)
    p.set_defaults(func=cmd_apply)

    kinds = "BGPConfiguration, BGPPeer, BGPFilter, IPPool or Node (plural and lower case work too)"
    p = verbs.add_parser(
        "get", help="show cluster resources", description=f"Show resources of one kind: {kinds}."
    )
    p.add_argument("kind", metavar="KIND")
    p.add_argument("name", metavar="NAME", nargs="?")
    p.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")
    _add_datastore_options(p)
    p.set_defaults(func=cmd_get)

    p = verbs.add_parser(
        "delete",
        help="delete a cluster resource",
        description=(
            f"Delete one resource ({kinds}). Deleting a Node also removes its registration and "
            "releases its address blocks."
        ),
    )
    p.add_argument("kind", metavar="KIND")
    p.add_argument("name", metavar="NAME")
    _add_datastore_options(p)
    p.set_defaults(func=cmd_delete)


def _register_ipam(verbs: Any) -> None:
    p = verbs.add_parser(
        "ipam", help="show IP address management", description="IP address management."
    )
    sub = p.add_subparsers(dest="ipam_verb", metavar="VERB", required=True)
    s = sub.add_parser(
        "show",
        help="pools, blocks and their owners",
        description="Show each pool's block and address usage; --show-blocks lists every block "
        "with its owning node.",
    )
    s.add_argument("--show-blocks", action="store_true", help="list every block and its node")
    s.add_argument("-o", "--output", choices=("table", "json"), default="table")
    _add_datastore_options(s)
    s.set_defaults(func=cmd_ipam_show)
    c = sub.add_parser(
        "check",
        help="find (and --fix) leaked handles and blocks of nodes that no longer exist",
        description="Check the IPAM records against each other and the nodes: leaked handles "
        "and addresses, blocks owned by nodes that no longer exist (no Node resource, no "
        "registration), affinities without their block and blocks without their affinity. "
        "--fix releases them, each with a compare-and-swap, so nothing written after the "
        "check is undone. Exit status 0: no problems (or all fixed); 3: problems left.",
    )
    c.add_argument("--fix", action="store_true", help="release what the check finds")
    c.add_argument("-o", "--output", choices=("table", "json"), default="table")
    _add_datastore_options(c)
    c.set_defaults(func=cmd_ipam_check)
