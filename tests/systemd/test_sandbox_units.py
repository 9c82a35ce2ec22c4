"""``[sandbox] mode = "workspace"`` under a real systemd, user and system mode: the real
Claude CLI, answered by the stub API with one shell tool call, runs a probe script in an
agent turn and in a cron job's run. In ``workspace`` mode the probe cannot read a secret
elsewhere in the home nor write outside the allowed folders, and can read and write its
workspace and a project root; a second turn resumes the CLI's session. In ``home`` mode
the same secret is readable.

The pinned CLI comes from tests/install-clis (.cache/npm of this repository) and is
bind-mounted read-only into the booted system at /opt/claude-code.
"""

from __future__ import annotations

import json
import pwd
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.process.conftest import real_claude  # noqa: F401 - the fixture
from tests.systemd.test_install import SRC, TOKEN, sh

pytestmark = pytest.mark.systemd

CLAUDE_INSIDE = "/opt/claude-code"
SECRET = "top-secret-value-7d1c"


@dataclass(frozen=True)
class Agent:
    """One sandboxed agent of the test, with the places its probe looks at."""

    name: str
    system: bool
    home: str
    state: str
    config: str
    dotenv: str
    port: int

    @property
    def workspace(self) -> str:
        return f"{self.state}/workspace"

    @property
    def secret(self) -> str:
        return f"{self.home}/{self.name}-secret.txt"

    @property
    def outside(self) -> str:
        return f"{self.home}/{self.name}-outside.txt"

    @property
    def project(self) -> str:
        return f"{self.home}/{self.name}-project"

    @property
    def ductor(self) -> str:
        return "ductor --system" if self.system else "ductor"

    @property
    def systemctl(self) -> str:
        return "systemctl" if self.system else "systemctl --user"


# The booted system is an overlay of this machine's root: root's home is the same there.
ROOT_HOME = pwd.getpwnam("root").pw_dir
USER_AGENT = Agent(
    name="sbx",
    system=False,
    home=ROOT_HOME,
    state=f"{ROOT_HOME}/.config/ductor/sbx",  # systemd 252: StateDirectory= of user units
    config=f"{ROOT_HOME}/.config/ductor/agents/sbx.toml",
    dotenv=f"{ROOT_HOME}/.config/ductor/credentials/sbx/.env",
    port=8391,
)
SYSTEM_AGENT = Agent(
    name="sbxs",
    system=True,
    home="/var/lib/ductor",
    state="/var/lib/ductor/sbxs",
    config="/etc/ductor/agents/sbxs.toml",
    dotenv="/etc/ductor/credentials/sbxs/.env",
    port=8392,
)


def run(sd: Any, agent: Agent, script: str, **kwargs: Any) -> Any:
    return sh(sd, script, user=not agent.system, **kwargs)


def probe_script(agent: Agent) -> str:
    return (
        "#!/bin/sh\n"
        f"cat {agent.secret} 2>/dev/null || echo SECRET-HIDDEN\n"
        f"(echo x > {agent.outside}) 2>/dev/null && echo OUTSIDE-WRITTEN || echo OUTSIDE-REFUSED\n"
        f"echo x > {agent.workspace}/written-by-cli && cat {agent.workspace}/note.txt\n"
        f"echo x > {agent.project}/written-by-cli && cat {agent.project}/readme.txt\n"
        f'echo "task=${{DUCTOR_TASK_ID:-none}}'
        f' $(cat {agent.secret} 2>/dev/null || echo SECRET-HIDDEN)"'
        f" >> {agent.workspace}/probe.log\n"
    )


def mount_claude(sd: Any, claude: Path) -> None:
    package = str(claude.resolve().parent.parent)
    sh(sd, f"mkdir -p {CLAUDE_INSIDE}", user=False)
    if sh(sd, f"test -x {shlex.quote(str(claude.resolve()))}", check=False).returncode == 0:
        sh(sd, f"mount --bind -o ro {shlex.quote(package)} {CLAUDE_INSIDE}", user=False)
    else:  # the checkout is not on the root file system the test systemd overlays
        sd.copy_in(package, CLAUDE_INSIDE)
    executable = f"{CLAUDE_INSIDE}/{claude.resolve().relative_to(package)}"
    sh(sd, f"ln -sf {executable} /usr/local/bin/claude", user=False)


def start_stub(sd: Any, agent: Agent) -> None:
    command = f"sh {agent.workspace}/probe.sh"
    sh(
        sd,
        f"systemd-run --unit=sandbox-api-{agent.name} --setenv=PYTHONPATH={SRC}"
        f" --working-directory={SRC} /usr/bin/python3 -m tests.stubs.anthropic_api"
        f" --port {agent.port} --mode tool --command {shlex.quote(command)}",
        user=False,
    )
    sd.wait_until(
        ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{agent.port}"],
        timeout=20,
        what="the stub API",
    )


def set_up(sd: Any, agent: Agent) -> None:
    owner = "ductor:ductor" if agent.system else "root:root"
    lines = [
        f"ANTHROPIC_BASE_URL=http://127.0.0.1:{agent.port}",
        "ANTHROPIC_API_KEY=sk-fake",
        "DISABLE_TELEMETRY=1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
        "DISABLE_AUTOUPDATER=1",
    ]
    run(
        sd,
        agent,
        f"install -d -m 0700 $(dirname {agent.dotenv}) && umask 077 && cat > {agent.dotenv}",
        input="".join(line + "\n" for line in lines),
    )
    run(
        sd,
        agent,
        f"cat >> {agent.config}",
        input=f'\n[project_roots]\nproj = "{agent.project}"\n\n[sandbox]\nmode = "home"\n',
    )
    script = probe_script(agent)
    sh(
        sd,
        f"umask 022; mkdir -p {agent.project} && echo project-readme > {agent.project}/readme.txt"
        f" && echo workspace-note > {agent.workspace}/note.txt"
        f" && cat > {agent.workspace}/probe.sh"
        f" && printf '%s\\n' {SECRET} > {agent.secret}"
        f" && chown -R {owner} {agent.project} {agent.workspace}/probe.sh"
        f" {agent.workspace}/note.txt {agent.secret} && chmod 0600 {agent.secret}",
        user=False,
        input=script,
    )


def use_sandbox(sd: Any, agent: Agent, mode: str) -> None:
    run(sd, agent, f'sed -i \'s/^mode = ".*"$/mode = "{mode}"/\' {agent.config}')
    run(sd, agent, f"{agent.ductor} agent sync {agent.name}")
    run(sd, agent, f"{agent.systemctl} stop ductor-agent@{agent.name}.service")
    sh(sd, f"rm -f {agent.outside} {agent.workspace}/written-by-cli", user=False)
    sh(sd, f"rm -f {agent.project}/written-by-cli", user=False)


def chat(sd: Any, agent: Agent, text: str) -> str:
    answer = run(sd, agent, f"{agent.ductor} chat {agent.name} -m {shlex.quote(text)}")
    return str(answer.stdout)


def exists(sd: Any, path: str) -> bool:
    return bool(sh(sd, f"test -e {path}", user=False, check=False).returncode == 0)


@pytest.fixture(scope="module")
def claude_inside(systemd: Any, real_claude: Path) -> Iterator[Any]:  # noqa: F811
    mount_claude(systemd, real_claude)
    yield systemd
    sh(systemd, f"rm -f /usr/local/bin/claude; umount {CLAUDE_INSIDE}", user=False, check=False)


@pytest.fixture(scope="module")
def user_agent(claude_inside: Any) -> Iterator[Agent]:
    sd, agent = claude_inside, USER_AGENT
    sh(sd, f"{SRC}/install.sh")
    sh(
        sd,
        f"ductor init {agent.name} --non-interactive --user-id 7 --timezone UTC --no-enable"
        " --telegram-token-file -",
        input=TOKEN + "\n",
    )
    set_up(sd, agent)
    start_stub(sd, agent)
    sh(sd, f"systemctl --user start ductor-agent@{agent.name}.socket")
    yield agent
    sh(sd, f"systemctl --user stop ductor-agent@{agent.name}.socket", check=False)
    sh(sd, f"systemctl --user stop ductor-agent@{agent.name}.service", check=False)
    sh(sd, f"systemctl stop sandbox-api-{agent.name}.service", user=False, check=False)
    sh(sd, f"ductor agent remove {agent.name} --purge", check=False)
    sh(sd, f"rm -rf {agent.secret} {agent.outside} {agent.project}", user=False, check=False)


@pytest.fixture(scope="module")
def system_agent(claude_inside: Any) -> Iterator[Agent]:
    sd, agent = claude_inside, SYSTEM_AGENT
    sh(sd, f"{SRC}/install.sh --system", user=False)
    sh(
        sd,
        f"ductor --system init {agent.name} --non-interactive --user-id 7 --timezone UTC"
        " --no-enable --telegram-token-file -",
        input=TOKEN + "\n",
        user=False,
    )
    set_up(sd, agent)
    start_stub(sd, agent)
    sh(sd, f"systemctl start ductor-agent@{agent.name}.socket", user=False)
    yield agent
    sh(sd, f"systemctl stop ductor-agent@{agent.name}.socket", user=False, check=False)
    sh(sd, f"systemctl stop ductor-agent@{agent.name}.service", user=False, check=False)
    sh(sd, f"systemctl stop sandbox-api-{agent.name}.service", user=False, check=False)
    sh(sd, f"{SRC}/install.sh --system --purge", user=False, check=False)


def check_turns(sd: Any, agent: Agent) -> None:
    use_sandbox(sd, agent, "home")
    answer = chat(sd, agent, "probe in home mode")
    assert SECRET in answer, answer
    assert "OUTSIDE-WRITTEN" in answer, answer

    use_sandbox(sd, agent, "workspace")
    answer = chat(sd, agent, "first probe in the sandbox")
    assert "SECRET-HIDDEN" in answer and SECRET not in answer, answer
    assert "OUTSIDE-REFUSED" in answer and not exists(sd, agent.outside), answer
    assert "workspace-note" in answer and exists(sd, f"{agent.workspace}/written-by-cli")
    assert "project-readme" in answer and exists(sd, f"{agent.project}/written-by-cli")

    for template in ("ductor-agent@", "ductor-webhook-run@"):  # every unit that runs a CLI
        unit = f"{template}{agent.name}.service"
        dropins = run(sd, agent, f"{agent.systemctl} show -p DropInPaths {unit}").stdout
        assert "60-sandbox.conf" in dropins, (unit, dropins)
    doctor = run(sd, agent, f"{agent.ductor} doctor {agent.name}", check=False).stdout
    assert f"sandbox {agent.name}: workspace" in doctor, doctor
    assert f"{agent.project} (read-write: project root)" in doctor, doctor
    assert f"media tools {agent.name}: available to its CLIs" in doctor, doctor
    status = chat(sd, agent, "/status")
    assert "Sandbox" in status and "workspace (the CLI sees only" in status, status

    again = chat(sd, agent, "second probe in the sandbox")
    assert "SECRET-HIDDEN" in again, again
    # the CLI resumed its session: one transcript holds both prompts
    transcripts = sh(
        sd,
        f"grep -rl 'second probe in the sandbox' {agent.home}/.claude/projects",
        user=False,
        check=False,
    ).stdout.split()
    assert len(transcripts) == 1, transcripts
    first = sh(sd, f"grep -c 'first probe in the sandbox' {transcripts[0]}", user=False)
    assert int(first.stdout) >= 1


def cron_output(sd: Any, agent: Agent) -> str:
    """The envelopes waiting in the agent's outbox (no transport runs), as they are."""
    return str(
        sh(sd, f"cat {agent.state}/spool/outbox/*/new/* 2>/dev/null || true", user=False).stdout
    )


def check_cron(sd: Any, agent: Agent) -> None:
    run(
        sd,
        agent,
        f"{agent.ductor} cron add {agent.name} probe --schedule '0 8 * * *'"
        " --prompt 'probe from cron' --title 'Job probe' --chat 7 --transport tg",
    )
    for mode, hidden in (("home", False), ("workspace", True)):
        use_sandbox(sd, agent, mode)
        sh(sd, f"rm -rf {agent.state}/spool/outbox/tg/new/*", user=False)
        run(sd, agent, f"{agent.ductor} cron run {agent.name} probe")
        sd.wait_until(
            lambda: "probe" in cron_output(sd, agent),
            timeout=90,
            what=f"the cron result ({mode} mode)",
        )
        output = cron_output(sd, agent)
        assert ("SECRET-HIDDEN" in output) is hidden, output
        assert (SECRET in output) is not hidden, output
        assert ("OUTSIDE-REFUSED" in output) is hidden, output
        assert "workspace-note" in output, output
        assert "project-readme" in output, output


def test_user_mode_workspace_sandbox_hides_the_home_from_the_agents_cli(
    claude_inside: Any, user_agent: Agent
) -> None:
    check_turns(claude_inside, user_agent)


def test_user_mode_workspace_sandbox_holds_for_a_cron_run(
    claude_inside: Any, user_agent: Agent
) -> None:
    check_cron(claude_inside, user_agent)


def test_system_mode_workspace_sandbox_hides_the_home_from_the_agents_cli(
    claude_inside: Any, system_agent: Agent
) -> None:
    check_turns(claude_inside, system_agent)


def test_system_mode_workspace_sandbox_holds_for_a_cron_run(
    claude_inside: Any, system_agent: Agent
) -> None:
    check_cron(claude_inside, system_agent)


def test_user_mode_workspace_sandbox_holds_for_a_background_task(
    claude_inside: Any, user_agent: Agent
) -> None:
    sd, agent = claude_inside, user_agent
    use_sandbox(sd, agent, "workspace")
    chat(sd, agent, "lay out the workspace")
    tools = f"{agent.workspace}/tools/task_tools"
    created = run(
        sd,
        agent,
        f"DUCTOR_AGENT_NAME={agent.name} DUCTOR_TRANSPORT=tg DUCTOR_CHAT_ID=7"
        f" python3 {tools}/create_task.py --name probe 'probe as a task'",
    )
    task_id = json.loads(created.stdout)["task"]["id"]
    sd.wait_until(
        lambda: f"task={task_id} " in sh(sd, f"cat {agent.workspace}/probe.log", user=False).stdout,
        timeout=60,
        what="the task's CLI ran the probe",
    )
    log = sh(sd, f"cat {agent.workspace}/probe.log", user=False).stdout
    line = next(line for line in log.splitlines() if line.startswith(f"task={task_id} "))
    assert line.endswith("SECRET-HIDDEN"), log
    assert SECRET not in log.split(f"task={task_id} ", 1)[1], log
