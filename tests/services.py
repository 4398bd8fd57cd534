"""Real services the tests start themselves: a PostgreSQL 15 server, a single-node SLURM cluster and an
MLflow tracking server on localhost. Each says exactly why when it cannot start: a missing system
package is a skip that names what to install, a missing Python package of the dev extra (mlflow) or
anything else that fails is an error with the service's own output."""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
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


SLURM_CONF = """ClusterName=dlexp
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={home}/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={home}/state
SlurmdSpoolDir={home}/spool
SlurmctldPidFile={home}/slurmctld.pid
SlurmdPidFile={home}/slurmd.pid
SlurmctldLogFile={home}/slurmctld.log
SlurmdLogFile={home}/slurmd.log
# no cgroups: processes tracked through /proc, no task confinement, no accounting daemon
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=2
JobRequeue=1
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def slurm_cluster() -> Iterator[dict[str, str]]:
    """munged, slurmctld and slurmd on localhost (one node, this machine's cores); yields the environment
    the SLURM commands need (``SLURM_CONF``), then stops them."""
    missing = [tool for tool in ("munged", "slurmctld", "slurmd", "sbatch", "scontrol") if shutil.which(tool) is None
               and not Path(f"/usr/sbin/{tool}").is_file()]
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} not found): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("the single-node SLURM cluster runs its daemons as root (SlurmUser=root): run the tests as root")
    home = Path(tempfile.mkdtemp(prefix="dlexp-slurm-"))
    os.chmod(home, 0o755)
    (home / "state").mkdir()
    (home / "spool").mkdir()
    node = socket.gethostname().split(".")[0]
    memory_mb = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 2
    conf = home / "slurm.conf"
    conf.write_text(SLURM_CONF.format(node=node, home=home, ctld_port=free_port(), slurmd_port=free_port(),
                                      cpus=os.cpu_count() or 1, memory_mb=memory_mb))
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin"}
    (home / "munge.key").write_bytes(os.urandom(1024))
    os.chmod(home / "munge.key", 0o400)
    daemons: list[subprocess.Popen] = []
    try:
        _run(["munged", "--force", f"--key-file={home}/munge.key", f"--socket={home}/munge.socket",
              f"--pid-file={home}/munged.pid", f"--log-file={home}/munged.log", f"--seed-file={home}/munged.seed"],
             log=home / "munged.log")
        for daemon in (["slurmctld", "-D"], ["slurmd", "-D", "-N", node]):
            out = open(home / f"{daemon[0]}.out", "w")
            daemons.append(subprocess.Popen(daemon, env=env, stdout=out, stderr=subprocess.STDOUT))

        def node_idle() -> bool:
            for proc in daemons:
                if proc.poll() is not None:
                    pytest.fail(f"{proc.args[0]} exited ({proc.returncode}): "
                                f"{(home / (proc.args[0] + '.out')).read_text()[-2000:]}")
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            return state.stdout.strip() == "idle"

        wait_for(node_idle, 60, f"the SLURM node {node} to be idle (logs in {home})")
        yield env
    finally:
        for proc in daemons:
            proc.terminate()
        for proc in daemons:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        pid_file = home / "munged.pid"
        if pid_file.is_file():
            subprocess.run(["kill", pid_file.read_text().strip()], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


class MlflowServer:
    """``mlflow server`` on a free 127.0.0.1 port, its SQLite store and artifacts in ``home``; ``stop`` ends it
    (every process it started: it runs in a session of its own)."""

    def __init__(self, home: Path):
        self.home, self.port = Path(home), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.home / "server.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> "MlflowServer":
        if importlib.util.find_spec("mlflow") is None:
            pytest.fail("mlflow is not installed in this environment, and the dev extra needs it: pip install -e '.[dev]'")
        self.home.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.home / 'mlflow.db'}",
                   "--artifacts-destination", str(self.home / "artifacts"), "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", "1"]
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def answers() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"mlflow server exited ({self.process.returncode}): {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(answers, timeout, f"mlflow server at {self.url} to answer /health (log: {self.log})")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def mlflow_server() -> Iterator[MlflowServer]:
    """A real MLflow tracking server with a SQLite store in a temp dir; yields it, then stops it."""
    server = MlflowServer(Path(tempfile.mkdtemp(prefix="dlexp-mlflow-")))
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(server.home, ignore_errors=True)
