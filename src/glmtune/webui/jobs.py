"""Jobs the web UI starts: `glmtune` subprocesses, each with a small JSON record in the workspace.

Records outlive the page and the server, so a reload (or a restarted `glmtune webui`)
still lists running and finished jobs. A job is always started from an argument list,
never through a shell, so nothing typed into the page is interpreted as shell syntax.
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from glmtune.errors import ConfigError
from glmtune.paths import write_atomically

RECORDS_DIR = ".glmtune-webui/jobs"
LOG_FILE = "webui_job.log"
RUNNING, FINISHED, STOPPED, FAILED, LOST = "running", "finished", "stopped", "failed", "lost"


def glmtune_command(workspace_root: Path, *arguments: str) -> list[str]:
    """The argv of a `glmtune` sub-command run by this Python, so jobs use the same installation, through
    contained_job, which checks the job's datasets against the workspace again when the job starts."""
    return [sys.executable, "-m", "glmtune.webui.contained_job", str(workspace_root), *arguments]


@dataclass
class JobRecord:
    id: str
    kind: str  # train, eval or export
    argv: list[str]
    output_dir: str
    log_file: str
    pid: int | None = None
    status: str = RUNNING
    returncode: int | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None
    stop_requested: bool = False

    @property
    def running(self) -> bool:
        return self.status == RUNNING


def final_status(returncode: int, stop_requested: bool) -> str:
    if stop_requested:
        return STOPPED
    return FINISHED if returncode == 0 else FAILED


def same_process(pid: int, argv: list[str]) -> bool:
    """Whether `pid` is still the job's process (not a later process that reused the number)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.is_dir():
        try:
            return cmdline.read_bytes().split(b"\0")[:-1] == [item.encode() for item in argv]
        except OSError:
            return False
    try:  # no /proc (macOS): the best available check is that the pid exists
        os.kill(pid, 0)
    except OSError:
        return False
    return True


class JobManager:
    """Start, stop and list jobs; one watcher thread per job records how it ended."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.records_dir = root / RECORDS_DIR
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen] = {}
        self.lock = threading.Lock()

    def start(self, kind: str, argv: list[str], output_dir: Path) -> JobRecord:
        output_dir.mkdir(parents=True, exist_ok=True)
        if any(record.running and Path(record.output_dir) == output_dir for record in self.list()):
            raise ConfigError(f"a job is already running in {output_dir}: stop it or choose another output dir")
        job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(2)}"
        log_file = output_dir / LOG_FILE
        record = JobRecord(id=job_id, kind=kind, argv=argv, output_dir=str(output_dir), log_file=str(log_file))
        with log_file.open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 - an argument list, never a shell
                argv,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # Ctrl-C in the server's terminal does not stop the jobs it started
            )
        record.pid = process.pid
        with self.lock:
            self.processes[job_id] = process
            self.save(record)
        threading.Thread(target=self.watch, args=(record, process), daemon=True).start()
        return record

    def watch(self, record: JobRecord, process: subprocess.Popen) -> None:
        returncode = process.wait()
        with self.lock:
            current = self.load(record.id) or record
            current.returncode = returncode
            current.status = final_status(returncode, current.stop_requested)
            current.ended = time.time()
            self.save(current)
            self.processes.pop(record.id, None)

    def stop(self, job_id: str) -> JobRecord:
        """Ask a running job to stop: SIGTERM, which glmtune train answers by saving a checkpoint first."""
        with self.lock:
            record = self.load(job_id)
            if record is None:
                raise ConfigError(f"no job {job_id!r}")
            if not record.running:
                return record
            record.stop_requested = True
            self.save(record)
            process = self.processes.get(job_id)
        if process is not None:
            process.send_signal(signal.SIGTERM)
        elif record.pid is not None and same_process(record.pid, record.argv):
            os.kill(record.pid, signal.SIGTERM)
        return record

    def get(self, job_id: str) -> JobRecord | None:
        return self.refreshed(self.load(job_id)) if job_id else None

    def list(self) -> list[JobRecord]:
        """All jobs, newest first."""
        records = (self.load(path.stem) for path in self.records_dir.glob("*.json"))
        return sorted((self.refreshed(r) for r in records if r), key=lambda record: record.started, reverse=True)

    def refreshed(self, record: JobRecord | None) -> JobRecord | None:
        """A record that says running although no process of this server runs it: check whether it still runs."""
        if record is None or not record.running or record.id in self.processes:
            return record
        if record.pid is not None and same_process(record.pid, record.argv):
            return record
        with self.lock:
            # read again under the lock: the watcher may have saved the job's end since `record` was read
            current = self.load(record.id)
            if current is None or not current.running or current.id in self.processes:
                return current
            current.status, current.ended = LOST, time.time()
            self.save(current)
        return current

    def load(self, job_id: str) -> JobRecord | None:
        path = self.records_dir / f"{job_id}.json"
        if path.parent != self.records_dir or not path.is_file():
            return None
        try:
            return JobRecord(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, record: JobRecord) -> None:
        """Write the record atomically, so a reader never sees half a file."""
        write_atomically(self.records_dir / f"{record.id}.json", json.dumps(asdict(record), ensure_ascii=False, indent=1))
