"""A private single-node Slurm cluster for the tests: munged, slurmctld and slurmd on this machine.

Its state lives in one folder (munge key and socket, state, spool, logs, job completion log), and
a Slurm or munge already running here is left alone. The one file outside it is
``/etc/slurm/slurm.conf``: Snakemake's job-step executor runs each rule with ``srun`` inside the
job but removes ``SLURM_CONF`` from that srun's environment, so the configuration has to be where
srun looks by default. The file is written only when absent (or left by a dead test cluster, as its
first line records) and removed again at the end. The daemons run in the foreground as our own
child processes, so they are stopped by their PID.

Accounting storage is off (no slurmdbd), so ``sacct`` cannot answer; job states come from
``squeue``, which lists finished jobs for ``MinJobAge`` seconds. Every finished job is also written
to ``jobcomp.log`` in the folder, and the daemons' logs are there too, for debugging a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The partition profiles/slurm-local/config.yaml submits to.
PARTITION = "local"
# Where srun finds the configuration when SLURM_CONF is unset, and the first line that marks it ours.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
OWNER_MARK = "# Written by rdp-bench tests/local_slurm.py for a test cluster; owner pid "
# Debian packages: slurm-wlm (slurmctld, slurmd, client commands) and munge.
BINARIES = ("munged", "slurmctld", "slurmd", "sinfo", "squeue", "sbatch", "srun", "scontrol", "scancel")


class SlurmUnavailable(RuntimeError):
    """The local cluster cannot be started here (missing packages, a daemon that died, a timeout)."""


def missing_binaries() -> list[str]:
    """The Slurm/munge programs that are not on PATH (or in /usr/sbin, where Debian puts daemons)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [name for name in BINARIES if shutil.which(name, path=path) is None]


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def conf_owner(path: Path) -> int | None:
    """The PID recorded in a slurm.conf written by this module, None for any other file."""
    first = path.read_text(errors="replace").split("\n", 1)[0]
    if not first.startswith(OWNER_MARK):
        return None
    pid = first[len(OWNER_MARK) :].strip()
    return int(pid) if pid.isdigit() else None


def claim_system_conf() -> None:
    """Make sure /etc/slurm/slurm.conf may be written: absent, or left by a test cluster that died."""
    if not SYSTEM_CONF.exists():
        return
    owner = conf_owner(SYSTEM_CONF)
    if owner is None:
        raise SlurmUnavailable(
            f"{SYSTEM_CONF} belongs to a Slurm set up on this machine; the test cluster "
            "will not overwrite it (run the test where Slurm is not configured)"
        )
    if owner != os.getpid() and pid_alive(owner):
        raise SlurmUnavailable(f"another test cluster (pid {owner}) is using {SYSTEM_CONF}; wait for it to end")


def free_port() -> int:
    """A TCP port that nothing listens on right now (so a Slurm on the default ports is no obstacle)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_memory_mb() -> int:
    """The memory Slurm may hand out on this node: 90% of the physical memory (slurmd drains a node
    whose RealMemory exceeds what it measures, and measures a little less than the total)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(total * 0.9) // 2**20


def slurm_conf(root: Path, node: str, cpus: int, memory_mb: int, ports: tuple[int, int], munge_socket: Path) -> str:
    """slurm.conf for one node ``node`` with ``cpus`` CPUs and ``memory_mb`` MiB, all state in ``root``.

    CPUs and memory are consumable (cons_tres), so jobs share the node as the local executor's
    ``--cores`` would; no cgroups (containers lack them), no accounting storage.
    """
    return "\n".join(
        [
            f"{OWNER_MARK}{os.getpid()}",
            "ClusterName=rdpbench",
            f"SlurmctldHost={node}(127.0.0.1)",
            f"SlurmctldPort={ports[0]}",
            f"SlurmdPort={ports[1]}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={munge_socket}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU_Memory",
            "ReturnToService=2",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={root / 'jobcomp.log'}",
            # squeue is the executor's only source of job states: keep finished jobs listed (with
            # their comment, which names the rule) for an hour.
            "MinJobAge=3600",
            # A job that names no memory gets 1 GB per CPU, not the whole node.
            "DefMemPerCPU=1000",
            f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


@dataclass
class LocalSlurm:
    """A running local cluster: its folder, the environment its clients need, and its daemons."""

    root: Path
    conf: Path = SYSTEM_CONF
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The current environment plus what Slurm's clients need to find this cluster."""
        path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
        return os.environ | {"SLURM_CONF": str(self.conf), "PATH": path}

    def run(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command against this cluster."""
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env, check=False)

    def node_state(self) -> str:
        """The node's state as sinfo prints it (``idle``, ``mix``, ``down*``, ...), or '' if unknown."""
        result = self.run("sinfo", "--noheader", "--Node", "--format=%t")
        return result.stdout.strip() if result.returncode == 0 else ""

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The last lines of a daemon's log file (for error messages)."""
        path = self.root / f"{name}.log"
        if not path.exists():
            return f"({path} was not written)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _spawn(self, name: str, *cmd: str) -> None:
        with open(self.root / f"{name}.out", "wb") as out:
            self.processes[name] = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        """Poll ``ready()`` until true; raise SlurmUnavailable when a daemon died or time ran out."""
        deadline = time.monotonic() + timeout
        while not ready():
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise SlurmUnavailable(
                        f"{name} exited with status {process.returncode} while waiting for "
                        f"{what}:\n{self.log_tail(name)}\n"
                        f"{(self.root / f'{name}.out').read_text(errors='replace')[-2000:]}"
                    )
            if time.monotonic() > deadline:
                raise SlurmUnavailable(
                    f"timed out after {timeout:.0f} s waiting for {what}; slurmctld log:\n"
                    f"{self.log_tail('slurmctld')}\nslurmd log:\n{self.log_tail('slurmd')}"
                )
            time.sleep(0.2)

    def start(self, timeout: float = 60) -> None:
        """Write the munge key and slurm.conf, start munged, slurmctld and slurmd, wait for an idle node."""
        missing = missing_binaries()
        if missing:
            raise SlurmUnavailable(f"{', '.join(missing)} not found: apt-get install slurm-wlm munge")
        claim_system_conf()
        for folder in ("state", "spool", "munge"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o755)  # munged wants its socket folder reachable
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        munge_socket = self.root / "munge" / "munge.socket"
        node = socket.gethostname().split(".")[0]
        cpus = len(os.sched_getaffinity(0))
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            slurm_conf(self.root, node, cpus, node_memory_mb(), (free_port(), free_port()), munge_socket)
        )
        # --force: munged refuses a socket under a private (0700) folder such as pytest's tmp_path.
        self._spawn(
            "munged",
            "munged",
            "--foreground",
            "--force",
            f"--key-file={key}",
            f"--socket={munge_socket}",
            f"--pid-file={self.root / 'munge' / 'munged.pid'}",
            f"--log-file={self.root / 'munged.log'}",
            f"--seed-file={self.root / 'munge' / 'munged.seed'}",
        )
        self._wait("munged's socket", munge_socket.exists, timeout)
        self._spawn("slurmctld", "slurmctld", "-D", "-f", str(self.conf))
        self._spawn("slurmd", "slurmd", "-D", "-f", str(self.conf), "-N", node)
        self._wait(f"node {node} to be idle in sinfo", lambda: self.node_state() == "idle", timeout)

    def stop(self, timeout: float = 30) -> None:
        """Cancel any job left, stop every daemon by its PID (SIGTERM, SIGKILL if it lingers), and
        remove the slurm.conf this cluster wrote."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            self.run("scancel", f"--partition={PARTITION}")
            deadline = time.monotonic() + timeout
            while self.run("squeue", "--noheader", "--states=RUNNING,COMPLETING,PENDING").stdout.strip():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout)
        if self.conf.exists() and conf_owner(self.conf) == os.getpid():
            self.conf.unlink()
