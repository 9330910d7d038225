#!/usr/bin/env python3
"""Extract the Kubernetes API schema of the kinds podbgp's manifests use, for offline validation.

    scripts/k8s-schema.py [--source KUBERNETES_TREE] [--out PATH]

Reads ``api/openapi-spec/swagger.json`` of a Kubernetes source tree (default: the one
scripts/k8s-e2e.sh fetched from Debian's ``kubernetes`` source package into
/var/cache/podbgp-k8s/src), takes the kinds that deploy/kubernetes/*.yaml declare and every
definition they reference, and writes them as one JSON Schema document (draft 7) to
tests/unit/k8s-schema.json, which tests/unit/test_k8s_schema.py validates the manifests against.

The OpenAPI definitions are made strict the way the API server and ``kubectl --validate``
treat a manifest: an object with declared properties refuses any other field; the metadata the
server sets itself (``uid``, ``resourceVersion``, ...) and ``status`` are not part of a
manifest; ``apiVersion`` and ``kind`` must name the kind; and the two special string formats
accept what the server accepts (int-or-string: an integer or a string; quantity: a string or a
number).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "deploy/kubernetes"
OUT = REPO / "tests/unit/k8s-schema.json"
CACHE_SRC = Path("/var/cache/podbgp-k8s/src")
REF = "#/definitions/"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# Object metadata the API server sets itself: nothing a manifest may carry.
SERVER_SET = ("clusterName", "creationTimestamp", "deletionGracePeriodSeconds",
              "deletionTimestamp", "generation", "managedFields", "resourceVersion", "selfLink",
              "uid")  # fmt: skip
KEEP = ("type", "format", "items", "properties", "required", "additionalProperties", "$ref",
        "enum")  # fmt: skip


def manifest_kinds(paths: Iterable[Path]) -> set[tuple[str, str]]:
    """(apiVersion, kind) of every document in the manifests."""
    kinds = set()
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                kinds.add((doc["apiVersion"], doc["kind"]))
    return kinds


def gvk_index(definitions: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(apiVersion, kind) -> definition name, from the x-kubernetes-group-version-kind tags."""
    out = {}
    for name, schema in definitions.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            api = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            out[(api, gvk["kind"])] = name
    return out


def convert(schema: dict[str, Any]) -> dict[str, Any]:
    """One OpenAPI v2 schema as a strict JSON Schema (descriptions dropped)."""
    fmt = schema.get("format")
    if fmt == "int-or-string":
        return {"type": ["integer", "string"]}
    if fmt == "quantity" or schema.get("$ref", "").endswith(".resource.Quantity"):
        return {"type": ["string", "number"]}
    out = {k: v for k, v in schema.items() if k in KEEP}
    if "properties" in schema:
        props = {k: convert(v) for k, v in schema["properties"].items()}
        out["properties"] = props
        out["required"] = [r for r in schema.get("required", []) if r in props]
        if not out["required"]:
            del out["required"]
        out.setdefault("additionalProperties", False)
        out.setdefault("type", "object")
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = convert(out["additionalProperties"])
    if "items" in out:
        out["items"] = convert(out["items"])
    return out


def references(schema: Any) -> Iterable[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(REF):
                yield value[len(REF) :]
            else:
                yield from references(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from references(value)


def extract(swagger: dict[str, Any], kinds: set[tuple[str, str]], source: str) -> dict[str, Any]:
    definitions = swagger["definitions"]
    index = gvk_index(definitions)
    missing = sorted(k for k in kinds if k not in index)
    if missing:
        raise SystemExit(f"k8s-schema: not in the API schema: {missing}")
    wanted = {index[k] for k in kinds}
    todo = list(wanted)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(references(definitions[name]))
    out_defs = {name: convert(definitions[name]) for name in sorted(seen)}
    meta = out_defs.get(OBJECT_META)
    if meta:
        for field in SERVER_SET:
            meta["properties"].pop(field, None)
    by_kind = {}
    for api, kind in sorted(kinds):
        name = index[(api, kind)]
        # A manifest's top level: no status, apiVersion and kind naming this kind.
        top = out_defs[name]
        top["properties"].pop("status", None)
        top["properties"]["apiVersion"] = {"const": api}
        top["properties"]["kind"] = {"const": kind}
        top["required"] = sorted({*top.get("required", []), "apiVersion", "kind", "metadata"})
        by_kind[f"{api}/{kind}"] = {"$ref": REF + name}
    # Only what a manifest can reach (the status types went with `status`).
    reachable: set[str] = set()
    todo = list(references(by_kind))
    while todo:
        name = todo.pop()
        if name not in reachable:
            reachable.add(name)
            todo.extend(references(out_defs[name]))
    out_defs = {name: out_defs[name] for name in sorted(reachable)}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$comment": f"Generated by scripts/k8s-schema.py from {source}; do not edit.",
        "kinds": by_kind,
        "definitions": out_defs,
    }


def default_source() -> Path:
    trees = sorted(CACHE_SRC.glob("kubernetes-*/api/openapi-spec/swagger.json"))
    if not trees:
        raise SystemExit(
            f"k8s-schema: no Kubernetes source under {CACHE_SRC} "
            "(scripts/k8s-e2e.sh build fetches it; or --source a Kubernetes tree)"
        )
    return trees[-1].parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="a Kubernetes source tree")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    tree = args.source or default_source()
    swagger_path = tree / "api/openapi-spec/swagger.json"
    swagger = json.loads(swagger_path.read_text())
    kinds = manifest_kinds(sorted(MANIFESTS.glob("*.yaml")))
    source = f"{tree.name}/api/openapi-spec/swagger.json (Debian source package kubernetes)"
    schema = extract(swagger, kinds, source)
    args.out.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    print(f"k8s-schema: {len(schema['definitions'])} definitions for "
          f"{', '.join(schema['kinds'])} -> {args.out}", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
