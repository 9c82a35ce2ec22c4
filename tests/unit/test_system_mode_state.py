"""``ductor --system`` runs as root and writes into the state of the ``ductor`` account
(cron jobs, task folders, the spool): what it creates there must belong to the account,
whose units cannot open root's 0600 files (they failed with EACCES, exit 78)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ductor.cron.jobs import Job, JobStore, task_folder
from ductor.spool import Envelope, Kind, Payload, Routing, Spool

ACCOUNT = 65534  # any uid that is not root: nobody

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only root writes for another account")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    directory = tmp_path / "var-lib-ductor" / "main"
    directory.mkdir(parents=True, mode=0o700)
    os.chown(directory, ACCOUNT, ACCOUNT)  # systemd's StateDirectory= with User=ductor
    return directory


def owners(*paths: Path) -> dict[str, int]:
    return {path.name: path.stat().st_uid for path in paths}


def test_a_cron_job_root_adds_belongs_to_the_agents_account(state: Path) -> None:
    job = Job(name="daily", schedule="0 8 * * *", prompt="news")
    JobStore(state).add(job)
    folder = task_folder(state / "workspace", "daily", job)
    created = [
        state / "cron_jobs.toml",
        state / ".cron_jobs.toml.lock",
        state / "workspace",
        folder.parent,
        folder,
        folder / "TASK.md",
        folder / "MEMORY.md",
    ]
    assert owners(*created) == {path.name: ACCOUNT for path in created}


def test_an_envelope_root_posts_belongs_to_the_agents_account(state: Path) -> None:
    spool = Spool(state / "spool", served=("tg",))
    spool.post(
        Envelope.create(
            agent="main",
            kind=Kind.NOTICE,
            routing=Routing(transport="tg", chat_id=1),
            payload=Payload(text="hello"),
        )
    )
    files = [p for p in (state / "spool").rglob("*")]
    assert files and {p.stat().st_uid for p in files} == {ACCOUNT}


def test_root_keeps_what_it_writes_in_its_own_directories(tmp_path: Path) -> None:
    JobStore(tmp_path / "root-owned").add(Job(name="daily", schedule="@daily", prompt="x"))
    assert (tmp_path / "root-owned" / "cron_jobs.toml").stat().st_uid == 0
