"""Entry point of the ``podbgp-cni`` executable (console script ``podbgp.cni.main:main``).

Owns the process boundary of the CNI plugin: read the network configuration from stdin and the
``CNI_*`` variables, dispatch to podbgp.cni.plugin, print the result (or the CNI error object) as
JSON on stdout, and exit 0 on success, 1 on error. Every failure, including one nobody anticipated,
leaves as a CNI error object: a container runtime must never have to parse a traceback. Diagnostics
go to stderr, which runtimes log.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
import traceback
from collections.abc import Mapping
from typing import IO, Any

from podbgp.cni.plugin import (
    CNI_VERSION,
    CniCode,
    CniError,
    NetConf,
    cmd_add,
    cmd_check,
    cmd_del,
    parse_env,
    parse_netconf,
    version_result,
)

log = logging.getLogger("podbgp.cni")


def open_store(conf: NetConf) -> Any:
    """The datastore named by the network configuration (podbgp.cluster.datastore, etcd or file)."""
    from podbgp.cluster.datastore import DEFAULT_FILE_PATH, DatastoreConfig, open_datastore

    ds = conf.datastore
    config = DatastoreConfig(
        type=ds.type,
        endpoints=ds.endpoints,
        prefix=ds.prefix,
        path=ds.path or DEFAULT_FILE_PATH,
        state_path=ds.state_path,
        ca_file=ds.ca_file,
        cert_file=ds.cert_file,
        key_file=ds.key_file,
    )
    return open_datastore(config)


async def _dispatch(conf: NetConf, command: str, env: Any) -> dict[str, Any] | None:
    store = open_store(conf)
    try:
        if command == "ADD":
            return await cmd_add(conf, env, store)
        if command == "DEL":
            await cmd_del(conf, env, store)
        else:
            await cmd_check(conf, env, store)
        return None
    finally:
        await store.close()


def run(stdin: bytes, environ: Mapping[str, str], stdout: IO[str]) -> int:
    """The whole plugin invocation; returns the exit status."""
    version = CNI_VERSION
    try:
        env = parse_env(environ)
        if env.command == "VERSION":
            requested = _requested_version(stdin)
            json.dump(version_result(requested or CNI_VERSION), stdout)
            return 0
        conf = parse_netconf(stdin)
        version = conf.cni_version
        result = asyncio.run(_dispatch(conf, env.command, env))
        if result is not None:
            json.dump(result, stdout)
        return 0
    except CniError as exc:
        log.warning("event=cni-error code=%d msg=%s details=%s", exc.code, exc.msg, exc.details)
        json.dump(exc.to_json(version), stdout)
        return 1
    except Exception as exc:  # the runtime gets an error object, stderr gets the traceback
        traceback.print_exc(file=sys.stderr)
        error = CniError(CniCode.IO_FAILURE, f"internal error: {exc}", type(exc).__name__)
        json.dump(error.to_json(version), stdout)
        return 1


def _requested_version(stdin: bytes) -> str | None:
    try:
        doc = json.loads(stdin) if stdin.strip() else {}
    except ValueError:
        return None
    value = doc.get("cniVersion") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("PODBGP_CNI_LOG", "WARNING").upper(),
        stream=sys.stderr,
        format="podbgp-cni %(levelname)s %(message)s",
    )
    out = io.StringIO()
    status = run(sys.stdin.buffer.read(), os.environ, out)
    if out.getvalue():
        sys.stdout.write(out.getvalue() + "\n")  # DEL and CHECK print nothing on success
        sys.stdout.flush()
    sys.exit(status)


if __name__ == "__main__":
    main()
