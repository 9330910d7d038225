"""The Kubernetes manifests (deploy/kubernetes) against the Kubernetes API schema, offline.

tests/unit/k8s-schema.json holds the definitions of the kinds the manifests use, extracted by
scripts/k8s-schema.py from the ``swagger.json`` of Debian's ``kubernetes`` source package (1.20)
and made strict as the API server and ``kubectl --validate`` are: unknown fields, wrong types,
missing required fields, server-set metadata and ``status`` are refused. Every error names the
manifest, the document and the path of the bad field.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((REPO / "deploy/kubernetes").glob("*.yaml"))
SCHEMA_FILE = Path(__file__).with_name("k8s-schema.json")
SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
SOURCE = Path("/var/cache/podbgp-k8s/src")


def field_path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.lstrip(".") or "(top level)"


def problems(doc: dict[str, Any]) -> list[str]:
    """Every schema violation of one manifest document, as ``path: what is wrong``."""
    key = f"{doc.get('apiVersion')}/{doc.get('kind')}"
    if key not in SCHEMA["kinds"]:
        return [f"kind: {key} is not in {SCHEMA_FILE.name} (run scripts/k8s-schema.py)"]
    schema = {"definitions": SCHEMA["definitions"], **SCHEMA["kinds"][key]}
    out = []
    for error in Draft7Validator(schema).iter_errors(doc):
        path = list(error.absolute_path)
        if error.validator == "additionalProperties":
            allowed = set(error.schema.get("properties", {}))
            for name in sorted(set(error.instance) - allowed):
                out.append(f"{field_path([*path, name])}: unknown field")
        elif error.validator == "required":
            for name in sorted(set(error.validator_value) - set(error.instance)):
                out.append(f"{field_path([*path, name])}: required field missing")
        else:
            out.append(f"{field_path(path)}: {error.message}")
    return sorted(out)


def documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in MANIFESTS:
        for n, doc in enumerate(yaml.safe_load_all(path.read_text())):
            docs.append((f"{path.relative_to(REPO)}[{n}]", doc))
    return docs


@pytest.mark.parametrize(
    ("where", "doc"), documents(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_manifest_matches_the_kubernetes_api_schema(where: str, doc: dict[str, Any]) -> None:
    found = problems(doc)
    assert not found, f"{where} ({doc['kind']} {doc['metadata'].get('name')}):\n  " + "\n  ".join(
        found
    )


def daemonset() -> dict[str, Any]:
    [doc] = [d for _, d in documents() if d["kind"] == "DaemonSet"]
    return copy.deepcopy(doc)


def test_unknown_fields_are_refused_with_their_path() -> None:
    ds = daemonset()
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilites"] = {}
    ds["spec"]["template"]["spec"]["hostNetwrok"] = True
    assert problems(ds) == [
        "spec.template.spec.containers[0].securityContext.capabilites: unknown field",
        "spec.template.spec.hostNetwrok: unknown field",
    ]


def test_wrong_types_and_missing_fields_are_refused_with_their_path() -> None:
    ds = daemonset()
    ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "179"
    del ds["spec"]["template"]["spec"]["initContainers"][0]["name"]
    ds["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1.5
    found = problems(ds)
    assert found == [
        "spec.template.spec.containers[0].ports[0].containerPort: '179' is not of type 'integer'",
        "spec.template.spec.initContainers[0].name: required field missing",
        "spec.template.spec.terminationGracePeriodSeconds: 1.5 is not of type 'integer'",
    ]


def test_server_set_fields_status_and_kind_are_checked() -> None:
    ds = daemonset()
    ds["status"] = {"numberReady": 1}
    ds["metadata"]["uid"] = "0000"
    ds["apiVersion"] = "extensions/v1beta1"
    assert problems(ds) == [f"kind: extensions/v1beta1/DaemonSet is not in {SCHEMA_FILE.name} "
                            "(run scripts/k8s-schema.py)"]  # fmt: skip
    ds["apiVersion"] = "apps/v1"
    assert problems(ds) == ["metadata.uid: unknown field", "status: unknown field"]
    # Special formats accept what the server does: int-or-string and quantities.
    ds = daemonset()
    pod = ds["spec"]["template"]["spec"]
    pod["containers"][0]["livenessProbe"]["httpGet"]["port"] = "api"
    pod["containers"][0]["resources"]["limits"]["cpu"] = 1
    ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = "10%"
    assert problems(ds) == []
    ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = [1]
    [problem] = problems(ds)
    assert problem.startswith("spec.updateStrategy.rollingUpdate.maxUnavailable: [1] is not of")


def test_the_schema_covers_every_kind_the_manifests_use() -> None:
    kinds = {f"{d['apiVersion']}/{d['kind']}" for _, d in documents()}
    assert kinds == set(SCHEMA["kinds"])
    assert "swagger.json" in SCHEMA["$comment"]


@pytest.mark.may_skip
def test_the_committed_schema_is_what_the_generator_makes(tmp_path: Path) -> None:
    trees = sorted(SOURCE.glob("kubernetes-*/api/openapi-spec/swagger.json"))
    if not trees:
        pytest.skip(f"no Kubernetes source under {SOURCE} (scripts/k8s-e2e.sh build fetches it)")
    out = tmp_path / "schema.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts/k8s-schema.py"), "--source",
         str(trees[-1].parents[2]), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text()) == SCHEMA
