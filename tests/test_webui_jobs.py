"""Jobs are subprocesses with a JSON record in the workspace: a reload (or a new server) still lists them."""

import json
import sys
import time

import pytest
from test_webui_support import wait_until_done

from glmtune.errors import ConfigError
from glmtune.webui.jobs import (
    FAILED,
    FINISHED,
    LOST,
    RUNNING,
    STOPPED,
    JobManager,
    JobRecord,
)

SLEEPER = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]


def test_a_finished_job_is_recorded_with_its_log(tmp_path):
    jobs = JobManager(tmp_path)
    record = jobs.start("train", [sys.executable, "-c", "print('hello from the job')"], tmp_path / "out")
    done = wait_until_done(jobs, record.id)
    assert (done.status, done.returncode) == (FINISHED, 0)
    assert "hello from the job" in (tmp_path / "out" / "webui_job.log").read_text()
    reloaded = JobManager(tmp_path).list()  # what a restarted server (or a page reload) sees
    assert [(r.id, r.status) for r in reloaded] == [(record.id, FINISHED)]


def test_a_failing_job_is_failed(tmp_path):
    jobs = JobManager(tmp_path)
    record = jobs.start("eval", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "out")
    assert (wait_until_done(jobs, record.id).status, jobs.get(record.id).returncode) == (FAILED, 3)


def test_stop_ends_a_running_job_and_a_second_job_in_the_same_folder_is_refused(tmp_path):
    jobs = JobManager(tmp_path)
    record = jobs.start("train", SLEEPER, tmp_path / "out")
    assert jobs.get(record.id).status == RUNNING
    with pytest.raises(ConfigError, match="already running"):
        jobs.start("train", SLEEPER, tmp_path / "out")
    jobs.stop(record.id)
    assert wait_until_done(jobs, record.id, timeout=20).status == STOPPED


def test_a_new_server_can_stop_a_job_started_by_an_earlier_one(tmp_path):
    first = JobManager(tmp_path)
    record = first.start("train", SLEEPER, tmp_path / "out")
    log = tmp_path / "out" / "webui_job.log"
    while "started" not in log.read_text():  # until the child has exec'd, /proc shows the parent's command line
        time.sleep(0.05)
    second = JobManager(tmp_path)
    assert second.get(record.id).status == RUNNING  # its pid still runs the same command line
    second.stop(record.id)
    assert wait_until_done(first, record.id, timeout=20).status == STOPPED


def test_a_running_record_whose_process_is_gone_becomes_lost(tmp_path):
    jobs = JobManager(tmp_path)
    record = JobRecord(id="20250101-000000-train-abcd", kind="train", argv=["no-such-program"], output_dir=str(tmp_path),
                       log_file=str(tmp_path / "log"), pid=2**22 + 7, status=RUNNING, started=time.time())  # fmt: skip
    jobs.save(record)
    assert jobs.get(record.id).status == LOST
    assert json.loads((jobs.records_dir / f"{record.id}.json").read_text())["status"] == LOST


@pytest.mark.parametrize("job_id", ["../x", "a/b", "", "missing"])
def test_unknown_or_path_like_job_ids_find_nothing(tmp_path, job_id):
    assert JobManager(tmp_path).get(job_id) is None


def test_an_end_saved_after_a_record_was_read_is_never_overwritten_as_lost(tmp_path):
    """A reader holding a stale 'running' record must not mark lost a job whose watcher just saved its end."""
    jobs = JobManager(tmp_path)
    record = jobs.start("train", SLEEPER, tmp_path / "out")
    stale = jobs.load(record.id)
    jobs.stop(record.id)
    assert wait_until_done(jobs, record.id, timeout=20).status == STOPPED
    other = JobManager(tmp_path)  # a second server: the job is no process of its own
    assert other.refreshed(stale).status == STOPPED
    assert other.get(record.id).status == STOPPED
