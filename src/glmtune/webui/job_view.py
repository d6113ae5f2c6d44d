"""How jobs appear in the page: selector choices, a status line and the jobs table."""

import time
from pathlib import Path

import gradio as gr

from glmtune.webui.jobs import JobManager, JobRecord
from glmtune.webui.progress import raw_tail, readable, training_progress

JOB_TABLE_HEADERS = ["job", "kind", "status", "output", "started"]


def job_choices(jobs: JobManager, kind: str) -> list[tuple[str, str]]:
    """(label, id) per job of one kind; the label names the folder (the status shows beside it, always current)."""
    return [(f"{record.id} · {Path(record.output_dir).name}", record.id) for record in jobs.list() if record.kind == kind]


def job_selector_update(jobs: JobManager, kind: str, chosen: str | None = None) -> dict:
    """The job selector's fresh choices with `chosen` selected, or the newest job of that kind."""
    choices = job_choices(jobs, kind)
    newest = choices[0][1] if choices else None
    return gr.update(choices=choices, value=chosen or newest)


def status_line(record: JobRecord, progress: tuple[int, int] | None) -> str:
    parts = [f"**{record.status}**"]
    if progress:
        step, total = progress
        parts.append(f"step {step} / {total} ({100 * step // max(total, 1)}%)")
    if record.returncode is not None:
        parts.append(f"exit code {record.returncode}")
    elapsed = (record.ended or time.time()) - record.started
    parts.append(f"{elapsed:.0f} s")
    return " · ".join(parts)


def job_state(jobs: JobManager, job_id: str | None) -> tuple[JobRecord | None, str, str]:
    """(record, status line, readable log tail) of one job; empty texts when none is chosen."""
    record = jobs.get(job_id or "")
    if record is None:
        return None, "", ""
    log = raw_tail(Path(record.log_file))
    return record, status_line(record, training_progress(log)), readable(log)


def jobs_table(jobs: JobManager) -> list[list[str]]:
    return [
        [record.id, record.kind, record.status, record.output_dir, time.strftime("%H:%M:%S", time.localtime(record.started))]
        for record in jobs.list()
    ]
