"""PID 1 inside the test VM: finish the root filesystem, load ``ipip``, run the job, report.

Started by the initramfs (see ``vmkit.INIT_SCRIPT``) after ``switch_root`` into the overlay of the
host's root. Reads the job (argv, env, cwd, module folder) from the JSON file given as argument,
runs it with output to ``output.log`` next to the job file, writes ``status``, and reports the exit
status to qemu through the ``isa-debug-exit`` port (qemu exits with ``(status << 1) | 1``).
Standard library only: it runs before anything else is set up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

EXIT_PORT = 0xF4
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sh(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"[guest] {' '.join(argv)}: {proc.stderr.strip()}", flush=True)


def setup(job: dict[str, object]) -> None:
    # /tmp stays the overlay of the host's /tmp (writable through the overlay): a checkout
    # under /tmp, as CI's may be, must remain visible in the guest.
    for target, fstype in (("/run", "tmpfs"), ("/dev/shm", "tmpfs")):
        os.makedirs(target, exist_ok=True)
        sh("mount", "-t", fstype, fstype, target)
    os.makedirs("/dev/pts", exist_ok=True)
    sh("mount", "-t", "devpts", "devpts", "/dev/pts")
    # The host has no /lib/modules of this kernel: point modprobe at the unpacked package.
    modules = Path("/usr/lib/modules")
    modules.mkdir(parents=True, exist_ok=True)
    link = modules / str(job["version"])
    if not link.exists():
        link.symlink_to(str(job["modules"]))
    sh("ip", "link", "set", "lo", "up")
    for module in ("ipip", "veth", "vxlan"):
        sh("modprobe", module)


def report(status: int) -> None:
    try:
        with open("/dev/port", "r+b", buffering=0) as port:
            port.seek(EXIT_PORT)
            port.write(bytes([status & 0xFF]))
    except OSError as exc:
        print(f"[guest] cannot report through /dev/port: {exc}", flush=True)


def main() -> None:
    job_path = Path(sys.argv[1])
    os.environ["PATH"] = BASE_PATH
    status = 125
    try:
        job = json.loads(job_path.read_text())
        setup(job)
        env = {"PATH": BASE_PATH, "HOME": "/root", "PYTHONDONTWRITEBYTECODE": "1"}
        env.update(job["env"])
        with open(job_path.parent / "output.log", "wb") as log:
            status = subprocess.run(
                job["argv"], cwd=job["cwd"], env=env, stdout=log, stderr=subprocess.STDOUT
            ).returncode
    except Exception:
        traceback.print_exc()
    (job_path.parent / "status").write_text(f"{status}\n")
    os.sync()
    print(f"[guest] exit {status}", flush=True)
    report(status if status >= 0 else 126)


if __name__ == "__main__":
    main()
