"""Run a command inside a throw-away qemu VM booted from Debian's stock kernel (for IPIP tests).

The host kernel here lacks ``ipip``; Debian's ``linux-image-amd64`` ships it as a module. This
module owns everything needed to boot that kernel in software emulation and run one command in
it, with the host's own root filesystem shared read-only over 9p (so the host's Python, venv and
this project are usable unchanged) under a tmpfs overlay:

* :func:`prepare_kernel` — resolve ``linux-image-amd64`` with ``apt-cache depends``, fetch it with
  ``apt-get download`` (never installed), unpack it with ``dpkg-deb -x``, run ``depmod``, and
  decompress the bzImage's xz payload to a plain ``vmlinux`` (booted through PVH: faster).
* :func:`build_initramfs` — busybox, an ``/init`` script and the virtio/9p/overlay modules.
* :func:`run_vm` — boot, run the job (argv, env, cwd from a JSON file on a read-write 9p share),
  and return its exit status through ``isa-debug-exit`` (qemu exits with ``(code << 1) | 1``; an
  even status means panic, hang or reboot: always a failure).

Everything is cached under ``$PODBGP_VM_CACHE`` (default ``~/.cache/podbgp-vm``). Command line:
``python tests/vm/vmkit.py prepare`` and ``python tests/vm/vmkit.py run -- CMD...``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("PODBGP_VM_CACHE", Path.home() / ".cache" / "podbgp-vm"))
META_PACKAGE = "linux-image-amd64"
INITRAMFS_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
RESULTS_TAG = "results"
GUEST_RESULTS = "/vmresults"
XZ_MAGIC = b"\xfd7zXZ\x00"
EXIT_PORT = 0xF4


@dataclass(frozen=True)
class Kernel:
    """An unpacked kernel: its version, a bootable vmlinux, and the unpacked package root."""

    version: str
    vmlinux: Path
    root: Path  # holds lib/modules/<version>

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.version


class VmError(RuntimeError):
    """The VM could not be prepared or did not report an exit status."""


def _run(*argv: str, cwd: Path | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    if proc.returncode != 0:
        raise VmError(f"{' '.join(argv)} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def resolve_kernel_package() -> str:
    """The real package ``linux-image-amd64`` points at, e.g. ``linux-image-6.1.0-56-amd64``."""
    out = _run("apt-cache", "depends", META_PACKAGE)
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split(":", 1)[1].strip()
    raise VmError(f"apt-cache depends {META_PACKAGE}: no linux-image dependency")


def prepare_kernel(cache: Path = CACHE) -> Kernel:
    """Fetch and unpack the kernel once; later calls reuse the cache."""
    package = resolve_kernel_package()
    version = package.removeprefix("linux-image-")
    root = cache / package
    vmlinux = root / "vmlinux"
    if vmlinux.exists() and (root / "lib" / "modules" / version / "modules.dep").exists():
        return Kernel(version, vmlinux, root)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        # apt-get download writes into the current directory; nothing gets installed.
        _run("apt-get", "download", package, cwd=Path(tmp))
        debs = list(Path(tmp).glob(f"{package}_*.deb"))
        if not debs:
            raise VmError(f"apt-get download {package} produced no .deb")
        staging = Path(tmp) / "root"
        _run("dpkg-deb", "-x", str(debs[0]), str(staging))
        _run("depmod", "-b", str(staging), version)
        bzimage = staging / "boot" / f"vmlinuz-{version}"
        (staging / "vmlinux").write_bytes(extract_vmlinux(bzimage.read_bytes()))
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    return Kernel(version, vmlinux, root)


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF kernel inside a bzImage whose payload is xz (Debian's CONFIG_KERNEL_XZ)."""
    start = bzimage.find(XZ_MAGIC)
    while start != -1:
        try:
            # The payload is followed by trailing data; the decompressor stops at stream end.
            elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(bzimage[start:])
        except lzma.LZMAError:
            start = bzimage.find(XZ_MAGIC, start + 1)
            continue
        if elf.startswith(b"\x7fELF"):
            return elf
        start = bzimage.find(XZ_MAGIC, start + 1)
    raise VmError("no xz-compressed ELF payload found in the bzImage")


# -- initramfs ----------------------------------------------------------------------------------

INIT_SCRIPT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /modules/$m || echo "insmod $m failed"; done
mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,ro hostroot /lower || poweroff -f
mount -t tmpfs -o size=512m tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
  || poweroff -f
mkdir -p /newroot{results}
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 {tag} /newroot{results} || poweroff -f
for d in proc sys dev; do mount --move /$d /newroot/$d; done
exec switch_root /newroot {python} {guest} {results}/job.json
"""


def _cpio_entry(name: str, mode: int, data: bytes = b"", ino: int = 0) -> bytes:
    """One ``newc`` cpio record (the format the kernel unpacks for an initramfs)."""
    encoded = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = header + encoded
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def module_paths(kernel: Kernel, names: tuple[str, ...] = INITRAMFS_MODULES) -> list[Path]:
    """The .ko files for ``names`` and their dependencies, in load order."""
    out = _run(
        "modprobe", "-a", "-d", str(kernel.root), "-S", kernel.version, "--show-depends", *names
    )
    paths: list[Path] = []
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == "insmod":
            path = Path(parts[1])
            if path not in paths:
                paths.append(path)
    return paths


def build_initramfs(kernel: Kernel, python: str, guest: Path, cache: Path = CACHE) -> Path:
    """A gzip-free cpio initramfs: busybox, /init, and the modules needed to reach the 9p root."""
    busybox = Path(shutil.which("busybox") or "/bin/busybox").resolve()
    init = INIT_SCRIPT.format(results=GUEST_RESULTS, tag=RESULTS_TAG, python=python, guest=guest)
    buf = io.BytesIO()
    ino = 1
    for d in ("bin", "proc", "sys", "dev", "modules"):
        buf.write(_cpio_entry(d, 0o040755, ino=ino))
        ino += 1
    buf.write(_cpio_entry("bin/busybox", 0o100755, busybox.read_bytes(), ino))
    buf.write(_cpio_entry("init", 0o100755, init.encode(), ino + 1))
    ino += 2
    order: list[str] = []
    for path in module_paths(kernel):
        data = path.read_bytes()
        if path.suffix == ".xz":
            data = lzma.decompress(data)
        name = path.name.removesuffix(".xz")
        order.append(name)
        buf.write(_cpio_entry(f"modules/{name}", 0o100644, data, ino))
        ino += 1
    buf.write(_cpio_entry("modules.order", 0o100644, "\n".join(order).encode(), ino))
    buf.write(_cpio_entry("TRAILER!!!", 0))
    digest = hashlib.sha256(init.encode()).hexdigest()[:12]
    target = cache / f"initramfs-{kernel.version}-{digest}.cpio"
    target.write_bytes(buf.getvalue())
    return target


# -- running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VmResult:
    status: int | None  # the guest command's exit status; None: no clean exit was reported
    qemu_status: int
    console: str


def run_vm(
    argv: list[str],
    results_dir: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float = 240.0,
    memory: str = "512M",
    cache: Path = CACHE,
) -> VmResult:
    """Boot the VM, run ``argv`` in it (as root, in ``cwd``), return its exit status.

    ``results_dir`` is shared read-write at :data:`GUEST_RESULTS` inside the guest; the job
    file goes there too. The console is returned (the guest should keep output short).
    """
    kernel = prepare_kernel(cache)
    guest = Path(__file__).resolve().parent / "guest_boot.py"
    python = str(Path(sys.executable).resolve())
    initramfs = build_initramfs(kernel, python, guest, cache)
    results_dir.mkdir(parents=True, exist_ok=True)
    job = {
        "argv": argv,
        "env": env or {},
        "cwd": cwd or os.getcwd(),
        "modules": str(kernel.modules),
        "version": kernel.version,
    }
    (results_dir / "job.json").write_text(json.dumps(job))
    cmd = [
        "qemu-system-x86_64",
        "-accel", "tcg,tb-size=128", "-cpu", "max", "-m", memory, "-smp", "1",
        "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
        "-kernel", str(kernel.vmlinux), "-initrd", str(initramfs),
        "-append", "console=ttyS0 quiet panic=-1 loglevel=3",
        "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
        "-fsdev", f"local,id={RESULTS_TAG},path={results_dir},security_model=none",
        "-device", f"virtio-9p-pci,fsdev={RESULTS_TAG},mount_tag={RESULTS_TAG}",
        "-device", f"isa-debug-exit,iobase={EXIT_PORT:#x},iosize=0x04",
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace")
        return VmResult(None, -1, out)
    console = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    # isa-debug-exit: qemu exits with (code << 1) | 1; even statuses are panics or reboots.
    status = proc.returncode >> 1 if proc.returncode & 1 else None
    return VmResult(status, proc.returncode, console)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare", help="fetch and unpack the kernel into the cache")
    runp = sub.add_parser("run", help="run a command in a fresh VM")
    runp.add_argument("--results", default=None, help="read-write results folder")
    runp.add_argument("--timeout", type=float, default=240.0)
    runp.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.cmd == "prepare":
        kernel = prepare_kernel()
        print(f"{kernel.version} {kernel.vmlinux}")
        return 0
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    results = Path(args.results or tempfile.mkdtemp(prefix="podbgp-vm-"))
    result = run_vm(argv, results, timeout=args.timeout)
    sys.stdout.write(result.console)
    print(f"[vm] status={result.status} qemu={result.qemu_status} results={results}")
    return 1 if result.status is None else result.status


if __name__ == "__main__":
    sys.exit(main())
