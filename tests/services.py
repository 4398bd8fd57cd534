"""Real services the tests start themselves: a PostgreSQL 15 server and a single-node SLURM cluster on
localhost. Each says exactly why when it cannot start: a missing package is a skip that names what
to install, anything else that fails is an error with the service's own output."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian's postgresql-15


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_user(user: str | None, *command: str) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as ``user``."""
    return ["runuser", "-u", user, "--", *command] if user else list(command)


def postgres_server() -> Iterator[str]:
    """``initdb`` into a temp dir, a server on a free 127.0.0.1 port, one database; yields its URL, then stops it."""
    if not (POSTGRES_BIN / "initdb").is_file():
        pytest.skip(f"PostgreSQL 15 server binaries not found in {POSTGRES_BIN}: apt-get install postgresql-15")
    user = None
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
            user = "postgres"
        except KeyError:
            pytest.fail("running as root, and there is no 'postgres' user to run the server as (Debian's postgresql "
                        "package creates it)")
    home = Path(tempfile.mkdtemp(prefix="dlexp-pg-"))
    data, port = home / "data", free_port()
    if user:
        shutil.chown(home, user)
    try:
        _run(_as_user(user, str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"))
        _run(_as_user(user, str(POSTGRES_BIN / "pg_ctl"), "-D", str(data), "-l", str(home / "server.log"), "-w", "-t", "60",
                      "-o", f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c max_connections=50", "start"),
             log=home / "server.log")
        _run(_as_user(user, str(POSTGRES_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "dlexp"))
        yield f"postgresql://postgres@127.0.0.1:{port}/dlexp"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_user(user, str(POSTGRES_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"),
                           capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _run(command: list[str], log: Path | None = None) -> None:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        extra = log.read_text()[-2000:] if log is not None and log.is_file() else ""
        pytest.fail(f"{' '.join(command)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}\n{extra}")


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
