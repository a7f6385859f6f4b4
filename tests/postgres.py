"""A throw-away PostgreSQL server on loopback for the distributed-storage tests (Debian's package)."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _bindir() -> Path:
    for candidate in [shutil.which("pg_config")] + sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_config")):
        if candidate:
            out = subprocess.run([candidate, "--bindir"], capture_output=True, text=True)
            path = Path(out.stdout.strip())
            if (path / "initdb").exists():
                return path
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: install Debian's postgresql package (.ci/run does)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> tuple[str, callable]:
    """Starts a server in a fresh directory; returns its URL and a function that stops and removes it."""
    bindir = _bindir()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    # PostgreSQL refuses to run as root, and the postgres user must reach the data directory.
    root = Path(tempfile.mkdtemp(prefix="autoprune-pg-"))
    root.chmod(0o755)
    data = root / "pgdata"
    if as_user:
        shutil.chown(root, "postgres")
    port = _free_port()
    run = lambda *cmd: subprocess.run(as_user + list(cmd), check=True, capture_output=True, text=True)  # noqa: E731
    run(str(bindir / "initdb"), "-D", str(data), "-U", "autoprune", "--auth=trust")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
    deadline = time.time() + 30
    while time.time() < deadline:
        if subprocess.run(as_user + [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)]).returncode == 0:
            break
        time.sleep(0.5)
    run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "autoprune", "studies")

    def stop() -> None:
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)

    return f"postgresql+psycopg2://autoprune@127.0.0.1:{port}/studies", stop
