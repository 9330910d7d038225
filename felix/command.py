"""Running the host's firewall tools (``nft``, ``iptables-save``/``-restore``) for felix: in a
network namespace when felix has one, with a time bound, stderr carried in the error."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

DEFAULT_TIMEOUT = 10.0


class CommandError(Exception):
    """The command failed; the message names it and carries its stderr."""


async def run_command(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    stdin: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Run ``argv`` (inside ``netns`` when given) and return its stdout."""
    args = list(argv) if netns is None else ["ip", "netns", "exec", netns, *argv]
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), timeout
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        text = err.decode(errors="replace").strip()
        raise CommandError(f"{argv[0]}: {text or f'exit {proc.returncode}'}")
    return out.decode()
