"""``ductor migrate`` under a real systemd: the original's cron jobs become timers with
the same schedules, and a run delivers into the chat and topic the job was made in.

Uses the fixture home written by the real original (tests/fixtures/original-home) as
root's ``~/.ductor``; removes the agents it made at the end.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.systemd.test_install import SRC, sh

pytestmark = pytest.mark.systemd

FIXTURE = f"{SRC}/tests/fixtures/original-home/ductor-home"
AGENTS = ("main", "research")
NEWS_TIMER = "ductor-cron@main:daily\\x2dnews.timer"
REVIEW_SERVICE = "ductor-cron@main:weekly\\x2dreview.service"
ENVELOPES = (
    "import glob, json, sys\n"
    "for f in sorted(glob.glob(sys.argv[1])):\n"
    "    print(json.dumps(json.load(open(f))))\n"
)


@pytest.fixture(scope="module")
def migrated(systemd: Any) -> Any:
    sh(systemd, f"{SRC}/install.sh")
    for name in AGENTS:  # an earlier module's agent of the same name
        sh(systemd, f"ductor agent remove {name} --purge", check=False)
    sh(systemd, f"rm -rf ~/.ductor && cp -r {FIXTURE} ~/.ductor")
    sh(systemd, f"ln -sf {SRC}/tests/fakecli/codex ~/.local/bin/codex")
    output = sh(systemd, "ductor migrate").stdout
    yield systemd, output
    for name in AGENTS:
        sh(systemd, f"ductor agent remove {name} --purge", check=False)
    sh(systemd, "rm -rf ~/.ductor ~/.local/bin/codex", check=False)


def test_the_originals_cron_jobs_are_timers_with_the_same_schedules(migrated: Any) -> None:
    systemd, output = migrated
    assert "0 written" not in output.split("done:")[1].splitlines()[1]
    timers = sh(systemd, "systemctl --user list-timers --all --no-legend 'ductor-cron@*'")
    assert NEWS_TIMER in timers.stdout
    assert "ductor-cron@main:weekly\\x2dreview.timer" in timers.stdout
    calendar = sh(systemd, f"systemctl --user show -p TimersCalendar '{NEWS_TIMER}'").stdout
    assert "Mon..Fri *-*-* 07:30:00 America/New_York" in calendar
    state = sh(systemd, f"systemctl --user is-enabled '{NEWS_TIMER}'").stdout.strip()
    assert state == "enabled"


def test_a_migrated_job_reports_into_the_chat_and_topic_it_was_made_in(migrated: Any) -> None:
    systemd, _ = migrated
    # The job was silent on success in the original; a user wants to see this run.
    sh(systemd, "ductor cron edit main weekly-review --no-silent-on-success")
    sh(systemd, f"systemctl --user start '{REVIEW_SERVICE}'")
    outbox = "{~/.config/ductor,~/.local/state/ductor}/main/spool/outbox/tg/new/*"
    script = ENVELOPES.replace("'", "'\\''")

    def delivered() -> list[dict[str, Any]]:
        out = sh(systemd, f'for f in {outbox}; do echo "$f"; done').stdout.split()
        found = [f for f in out if "*" not in f]
        if not found:
            return []
        text = sh(systemd, f"python3 -c '{script}' '{found[0].rsplit('/', 1)[0]}/*'").stdout
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    systemd.wait_until(delivered, timeout=60, what="the cron result in the Telegram outbox")
    envelope = delivered()[0]
    assert envelope["routing"]["chat_id"] in (-100200, "-100200")
    assert envelope["routing"]["topic_id"] in (7, "7")
    assert "Weekly review" in json.dumps(envelope)
