"""The import contract: which package may import which, no cycles, one pyroute2 importer.

Read from the source with ``ast`` (every ``import`` statement, at module level or inside a
function or a ``TYPE_CHECKING`` block), so a lazy import cannot hide a dependency or a cycle.

* ``felix`` (the kernel dataplane) imports nothing from ``bgpd`` or ``podbgp``;
* ``bgpd`` (the speaker) imports nothing from ``felix`` or ``podbgp``;
* ``bgpd.codec`` imports no I/O (asyncio, socket servers, threads, subprocesses);
* ``podbgp.cluster`` knows neither the speaker nor the dataplane (it shares only bgpd's pure
  validators: ``bgpd.configcheck``, the BGPFilter rule model ``bgpd.bgpfilter`` and
  ``bgpd.bgpfilter_support``); ``podbgp.node.wiring`` is the
  only module that imports both ``bgpd`` and ``felix``;
* only ``felix.kernel.netlink`` imports pyroute2;
* no import cycles between modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PACKAGES = ("bgpd", "felix", "podbgp", "rr")
# Pure validators of bgpd that the cluster's resources share (no speaker state, no I/O).
CLUSTER_MAY_USE = ("bgpd.configcheck", "bgpd.bgpfilter", "bgpd.bgpfilter_support")
CODEC_FORBIDDEN = ("asyncio", "socketserver", "threading", "subprocess", "selectors")


def modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports_of(name: str, path: Path, known: dict[str, Path] | None = None) -> Iterator[str]:
    """Every module an import statement in ``path`` names (relative imports resolved).

    ``from pkg import module`` names ``pkg.module`` when ``known`` lists it (a dependency on the
    module, not on the package, as import-linter counts it); otherwise ``pkg``.
    """
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if known is not None and sub in known else base


def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    mods = modules()
    return {
        name: {i for i in imports_of(name, path, mods) if i in mods and i != name}
        for name, path in mods.items()
    }


def external(name: str, path: Path) -> set[str]:
    return {i.split(".")[0] for i in imports_of(name, path)}


def top(module: str) -> str:
    return module.split(".")[0]


def test_graph_sees_the_tree() -> None:
    edges = graph()
    assert "bgpd.speaker" in edges and "felix.dataplane" in edges and "podbgp.cli" in edges
    assert "bgpd.events" in edges["bgpd.speaker"]  # the walker resolves real imports


def test_felix_imports_no_speaker_and_no_product() -> None:
    bad = [
        (m, t) for m, ts in graph().items() if top(m) == "felix" for t in ts if top(t) != "felix"
    ]
    assert bad == []


def test_bgpd_imports_no_dataplane_and_no_product() -> None:
    bad = [(m, t) for m, ts in graph().items() if top(m) == "bgpd" for t in ts if top(t) != "bgpd"]
    assert bad == []


def test_codec_does_no_io() -> None:
    mods = modules()
    bad = {
        m: sorted(external(m, p) & set(CODEC_FORBIDDEN))
        for m, p in mods.items()
        if m.startswith("bgpd.codec")
    }
    assert {m: v for m, v in bad.items() if v} == {}
    codec_deps = {t for m, ts in graph().items() if m.startswith("bgpd.codec") for t in ts}
    assert {t for t in codec_deps if not t.startswith("bgpd.codec")} == set()


def test_cluster_knows_neither_speaker_nor_dataplane() -> None:
    bad = [
        (m, t)
        for m, ts in graph().items()
        if m.startswith("podbgp.cluster")
        for t in ts
        if top(t) in ("bgpd", "felix") and t not in CLUSTER_MAY_USE
    ]
    assert bad == []


def test_only_wiring_imports_both_speaker_and_dataplane() -> None:
    both = sorted(
        m
        for m, ts in graph().items()
        if {"bgpd", "felix"} <= {top(t) for t in ts} and top(m) == "podbgp"
    )
    assert both == ["podbgp.node.wiring"]


def test_one_pyroute2_importer() -> None:
    importers = sorted(m for m, p in modules().items() if "pyroute2" in external(m, p))
    assert importers == ["felix.kernel.netlink"]


def test_no_import_cycles() -> None:
    edges = graph()
    # Tarjan's strongly connected components; any component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert cycles == []
