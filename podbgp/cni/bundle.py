"""A self-contained runtime for ``podbgp-cni`` on a node: ``python3 -m podbgp.cni.bundle DEST``.

The CNI plugin is Python, and a node may have no Python at all (or another one, or an older C
library). The DaemonSet's init container (deploy/cni/install-cni) therefore runs this module with
the image's own interpreter — wherever the image keeps it — and copies to the node only what the
plugin needs to run there, with nothing taken from the node but the kernel and ``/bin/sh``:

    DEST/bin/python3             the interpreter running this module
    DEST/lib/ld.so               its ELF program loader
    DEST/lib/*.so*               every shared library the interpreter and the extension modules
                                 load (as ``ldd`` resolves them in the image), the C library too
    DEST/lib/pythonX.Y/          the standard library and lib-dynload, without test suites, GUI
                                 toolkits, IDLE, installers and the static libpython
    DEST/site/                   podbgp and the distributions it requires, with their metadata
                                 (entry points) so the launcher finds ``podbgp-cni``

The launcher (deploy/cni/podbgp-cni-host) starts ``DEST/bin/python3`` through ``DEST/lib/ld.so
--library-path DEST/lib``, so the node's own loader and libraries are never used.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT_DISTRIBUTION = "podbgp"
# Parts of the standard library the plugin never imports.
STDLIB_SKIP = frozenset(
    {
        "test", "tests", "idlelib", "tkinter", "turtledemo", "turtle.py", "ensurepip", "lib2to3",
        "pydoc_data", "site-packages", "dist-packages", "venv", "distutils",
    }
)  # fmt: skip
STDLIB_SKIP_PREFIXES = ("config-", "_tkinter", "_test", "xxlimited")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class BundleError(Exception):
    """The runtime cannot be made from this interpreter (the message says why)."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(root: str = ROOT_DISTRIBUTION) -> list[md.Distribution]:
    """``root`` and every distribution it requires, transitively, as installed here.

    Extras are not followed. A requirement with an environment marker that is not installed is
    taken to be one whose marker does not hold here (``python_version < "3.11"``, Windows-only,
    ...); a requirement without a marker that is missing is an error."""
    found: dict[str, md.Distribution] = {}
    todo = [(root, "")]
    while todo:
        name, marker = todo.pop()
        key = _canonical(name)
        if key in found:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            if marker:
                continue
            raise BundleError(f"distribution {name!r} is required but not installed") from None
        found[key] = dist
        for req in dist.requires or ():
            spec, _, req_marker = req.partition(";")
            if "extra" in req_marker:
                continue
            match = _NAME.match(spec.strip())
            if match:
                todo.append((match.group(0), req_marker.strip()))
    return sorted(found.values(), key=lambda d: _canonical(d.metadata["Name"]))


def top_level_names(dist: md.Distribution) -> list[str]:
    """The importable top-level packages and modules of an installed distribution."""
    listed = dist.read_text("top_level.txt")
    if listed:
        names = {line.strip() for line in listed.splitlines() if line.strip()}
    else:
        names = set()
        for file in dist.files or ():
            first = file.parts[0]
            if len(file.parts) == 1 and not first.endswith((".py", ".so")):
                continue
            if first.startswith("..") or first.endswith((".dist-info", ".data", ".pth")):
                continue
            names.add(first.split(".")[0] if len(file.parts) == 1 else first)
    names.discard("__pycache__")
    if not names:
        raise BundleError(
            f"distribution {dist.metadata['Name']!r} lists no importable files "
            "(an editable install?): install it as a wheel"
        )
    return sorted(names)


def _module_paths(name: str) -> list[Path]:
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise BundleError(f"module {name!r} is listed by its distribution but not importable")
    if spec.submodule_search_locations:
        return [Path(p) for p in spec.submodule_search_locations]
    if spec.origin is None:
        raise BundleError(f"module {name!r} has no file")
    return [Path(spec.origin)]


def _stdlib_ignore(_dir: str, names: list[str]) -> list[str]:
    return [n for n in names if n in STDLIB_SKIP or n.startswith(STDLIB_SKIP_PREFIXES)]


def _copy(src: Path, dest: Path, stdlib: bool = False) -> None:
    if src.is_dir():
        shutil.copytree(
            src, dest, dirs_exist_ok=True, ignore_dangling_symlinks=True,
            ignore=_stdlib_ignore if stdlib else None,
        )  # fmt: skip
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)


def copy_stdlib(dest: Path) -> Path:
    """The standard library (with lib-dynload) to ``dest/lib/pythonX.Y``; returns that path."""
    stdlib = Path(sysconfig.get_path("stdlib"))
    target = dest / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    _copy(stdlib, target, stdlib=True)
    dynload = Path(sysconfig.get_config_var("DESTSHARED") or stdlib / "lib-dynload")
    if dynload.is_dir() and not dynload.is_relative_to(stdlib):
        _copy(dynload, target / "lib-dynload", stdlib=True)
    if not (target / "os.py").is_file():
        raise BundleError(f"no standard library at {stdlib}")
    return target


def _listed_files(dist: md.Distribution, names: list[str]) -> list[Path]:
    """The files a distribution installed under its top-level names (empty for an editable one)."""
    return [
        Path(str(f)) for f in dist.files or ()
        if f.parts[0] in names or (len(f.parts) == 1 and f.parts[0].split(".")[0] in names)
    ]  # fmt: skip


def copy_distributions(dists: Iterable[md.Distribution], site: Path) -> None:
    """Each distribution's packages, and the metadata that makes its entry points findable.

    Only the files a distribution lists are copied (one portion of a namespace package such as
    ``google`` is not the whole namespace); a distribution installed in editable mode lists none,
    and its packages are copied from where they are imported from."""
    for dist in dists:
        names = top_level_names(dist)
        listed = _listed_files(dist, names)
        if listed:
            for rel in listed:
                src = Path(str(dist.locate_file(str(rel))))
                if src.is_file():
                    _copy(src, site / rel)
        else:
            for name in names:
                for path in _module_paths(name):
                    _copy(path, site / name if path.is_dir() else site / path.name)
        meta = site / f"{_canonical(dist.metadata['Name']).replace('-', '_')}.dist-info"
        meta.mkdir(parents=True, exist_ok=True)
        for file in ("METADATA", "entry_points.txt"):
            text = dist.read_text(file)
            if text is not None:
                (meta / file).write_text(text)


def _elf_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.so*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                if f.read(4) == b"\x7fELF":
                    yield path


def shared_libraries(elf: Path) -> tuple[dict[str, Path], Path | None]:
    """``ldd``'s view of ``elf``: soname -> resolved file, and the program loader (if dynamic)."""
    proc = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        if "not a dynamic executable" in proc.stdout + proc.stderr:
            return {}, None
        raise BundleError(f"ldd {elf}: {proc.stderr.strip() or proc.stdout.strip()}")
    libs: dict[str, Path] = {}
    loader: Path | None = None
    for line in proc.stdout.splitlines():
        soname, arrow, rest = line.strip().partition(" => ")
        if arrow:
            target = rest.split(" (")[0].strip()
            if target == "not found":
                raise BundleError(f"{elf}: shared library {soname} not found")
            if target.startswith("/"):
                libs[soname] = Path(target)
        elif soname.startswith("/"):
            loader = Path(soname.split(" (")[0])
        elif "statically linked" in soname:
            return {}, None
    return libs, loader


def copy_shared_libraries(interpreter: Path, dest: Path) -> None:
    """The loader as ``dest/lib/ld.so`` and every library the ELF files of ``dest`` need."""
    lib = dest / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    _, loader = shared_libraries(interpreter)
    if loader is None:
        raise BundleError(f"{interpreter} is not dynamically linked: nothing to bundle it with")
    shutil.copy2(loader.resolve(), lib / "ld.so")
    needed: dict[str, Path] = {}
    for elf in [interpreter, *_elf_files(dest)]:
        needed.update(shared_libraries(elf)[0])
    for soname, path in sorted(needed.items()):
        if not (lib / soname).exists():
            shutil.copy2(path.resolve(), lib / soname)


def build(dest: Path, root: str = ROOT_DISTRIBUTION) -> None:
    """Make the runtime in ``dest`` (which must not exist yet)."""
    if dest.exists():
        raise BundleError(f"{dest} exists")
    interpreter = Path(sys.executable).resolve()
    if not interpreter.is_file():
        raise BundleError(f"the interpreter {sys.executable!r} is not a file")
    dists = requirement_closure(root)
    (dest / "bin").mkdir(parents=True)
    shutil.copy2(interpreter, dest / "bin/python3")
    copy_stdlib(dest)
    copy_distributions(dists, dest / "site")
    copy_shared_libraries(interpreter, dest)


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m podbgp.cni.bundle",
        description="Make a self-contained runtime for podbgp-cni in DEST (must not exist).",
    )
    parser.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    try:
        build(args.dest)
    except (BundleError, OSError) as exc:
        print(f"podbgp.cni.bundle: {exc}", file=sys.stderr)
        return 2
    print(f"podbgp.cni.bundle: {args.dest} ({_size(args.dest) // 2**20} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
