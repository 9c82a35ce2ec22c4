"""argv, stdin and environment of a turn, per CLI, checked against the recorded runs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from ductor.providers import claude, codex, gemini, spec_for
from ductor.providers.request import ARGV_TEXT_LIMIT, PermissionMode, TurnRequest


def fixtures_dir() -> Path:
    """The recorded CLI runs (tests/record-cli writes them)."""
    return Path(__file__).resolve().parents[1] / "fixtures" / "cli"


FIXTURES = fixtures_dir()

# Options that take a value, per CLI; everything else starting with "-" is a switch.
VALUE_OPTIONS = {
    "claude": {
        "--output-format",
        "--model",
        "--permission-mode",
        "--resume",
        "--effort",
        "--append-system-prompt",
        "--append-system-prompt-file",
        "--max-turns",
        "--max-budget-usd",
        "--allowedTools",
    },
    "codex": {"-c", "-m", "-s", "--color"},
    "gemini": {"--output-format", "-m", "--approval-mode", "--resume", "-p"},
}
# Flags ductor adds to every turn that the recorded runs did not need.
ALWAYS_ADDED = {
    "claude": {("--include-partial-messages", None)},
    "codex": {("--color", "never")},
    "gemini": set(),
}


def canonical(cli: str, argv: list[str]) -> tuple[list[str], set[tuple[str, str | None]]]:
    """argv without the executable and the prompt: (subcommand words, options)."""
    words: list[str] = []
    options: set[tuple[str, str | None]] = set()
    args = iter(argv[1:])
    for arg in args:
        if arg == "--":
            break  # only the prompt follows
        if arg.startswith("-") and arg != "-":
            value = next(args) if arg in VALUE_OPTIONS[cli] else None
            if arg != "-p" or cli != "gemini":  # gemini -p carries the prompt
                options.add((arg, value))
        else:
            words.append(arg)
    if cli == "codex":  # keep "exec" and "resume ID"; drop the prompt or "-"
        keep = 3 if "resume" in words else 1
        words = words[:keep]
    else:
        words = []
    return words, options - ALWAYS_ADDED[cli]


def fixture_argv(name: str) -> list[str]:
    meta = json.loads((FIXTURES / f"{name}.meta.json").read_text())
    return [str(a) for a in meta["argv"]]


def fake_provider_setup(argv: list[str]) -> tuple[str, ...]:
    """The `-c` options a Codex recording used to reach its fake server: cli_parameters."""
    extra: list[str] = []
    for flag, value in itertools.pairwise(argv):
        if flag == "-c" and not value.startswith("model_reasoning_effort"):
            extra += [flag, value]
    return tuple(extra)


def resumed_session(name: str) -> str:
    """The session id a recorded resume run was given (--resume ID, codex: resume ID)."""
    argv = fixture_argv(name)
    flag = "resume" if name.startswith("codex-") else "--resume"
    return argv[argv.index(flag) + 1]


BYPASS = {"permission_mode": PermissionMode.BYPASS}
# Recorded run -> the request that reproduces its argv. Runs absent here use defaults.
REQUESTS: dict[str, dict[str, object]] = {
    "claude-resume": {"session_id": resumed_session("claude-resume")},
    "claude-tool": BYPASS,
    "claude-tool-bypass-as-root-refused": BYPASS,
    "claude-interrupt-during-tool": BYPASS,
    "claude-tool-allowed": {"extra_args": ("--allowedTools", "Bash(touch:*)")},
    "claude-model": {"model": "claude-sonnet-4-5"},
    "claude-model-alias": {"model": "haiku"},
    "codex-resume": {"session_id": resumed_session("codex-resume")},
    "codex-tool-bypass": BYPASS,
    "codex-interrupt-during-tool": BYPASS,
    "codex-tool-write-workspace": {"permission_mode": PermissionMode.ACCEPT_EDITS},
    "codex-model": {"model": "gpt-5.6-sol"},
    "codex-model-unknown": {"model": "my-fake-model"},
    "codex-ephemeral": {"extra_args": ("--ephemeral",)},
    "gemini-resume": {"session_id": resumed_session("gemini-resume")},
    "gemini-tool-approval-yolo": BYPASS,
    "gemini-model": {"model": "gemini-2.5-flash"},
}
# Recorded runs whose argv ductor never produces, and why.
NOT_DUCTORS_ARGV = {
    "claude-continue": "ductor resumes by session id, never --continue",
    "claude-tool-skip-perms": "ductor says --permission-mode bypassPermissions",
    "claude-json-format": "ductor always streams",
    "codex-resume-last": "ductor resumes by session id, never --last",
    "codex-plain-text": "ductor always asks for --json",
    "gemini-resume-latest": "ductor resumes by session id, never latest",
    "gemini-list-sessions": "not a turn",
    "gemini-tool": "ductor says --approval-mode yolo, not the deprecated --yolo",
    "gemini-tool-write-yolo": "ductor says --approval-mode yolo, not the deprecated --yolo",
    "gemini-tool-json-format": "ductor always streams",
    "gemini-json-format": "ductor always streams",
    "gemini-error-500-json": "ductor always streams",
    "gemini-text-format": "ductor always streams",
}
REPRODUCIBLE = sorted(
    p.name.removesuffix(".meta.json")
    for p in FIXTURES.glob("*.meta.json")
    if p.name.removesuffix(".meta.json") not in NOT_DUCTORS_ARGV
)


def test_most_recorded_runs_have_an_argv_ductor_can_produce() -> None:
    assert len(REPRODUCIBLE) >= 50


@pytest.mark.parametrize("name", REPRODUCIBLE)
def test_build_argv_reproduces_the_recorded_argv_apart_from_prompt_and_paths(name: str) -> None:
    cli = name.split("-", maxsplit=1)[0]
    recorded = fixture_argv(name)
    fields = dict(REQUESTS.get(name, {}))
    if cli == "codex":
        fields["extra_args"] = (*fake_provider_setup(recorded), *fields.get("extra_args", ()))  # type: ignore[misc]
    request = TurnRequest(prompt="hello", **fields)  # type: ignore[arg-type]

    built = spec_for(cli).build_argv(request, recorded[0])

    assert built[0] == recorded[0]
    assert canonical(cli, built) == canonical(cli, recorded)


# -- Claude ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt", ["my private question", "--help me", "p" * (ARGV_TEXT_LIMIT + 1)]
)
def test_claude_reads_every_prompt_from_stdin_and_never_from_argv(prompt: str) -> None:
    request = TurnRequest(prompt=prompt, session_id="abc")

    argv = claude.build_argv(request)

    assert not any(prompt in arg for arg in argv)  # `ps` shows argv to every local user
    assert "--" not in argv
    assert claude.stdin_text(request) == prompt


def test_claude_streams_tokens_with_verbose_stream_json() -> None:
    argv = claude.build_argv(TurnRequest(prompt="hi"))

    assert argv[:4] == ["claude", "-p", "--output-format", "stream-json"]
    assert "--verbose" in argv
    assert "--include-partial-messages" in argv


def test_claude_does_not_repeat_verbose_given_in_cli_parameters() -> None:
    argv = claude.build_argv(TurnRequest(prompt="hi", extra_args=("--verbose",)))

    assert argv.count("--verbose") == 1


def test_claude_resume_effort_limits_and_cli_parameters_keep_their_order() -> None:
    request = TurnRequest(
        prompt="go",
        session_id="abc",
        model="opus",
        effort="high",
        permission_mode=PermissionMode.PLAN,
        max_turns=5,
        max_budget_usd=2.5,
        extra_args=("--add-dir", "/x"),
    )

    argv = claude.build_argv(request)

    tail = argv[argv.index("--permission-mode") :]
    assert tail == [
        "--permission-mode",
        "plan",
        "--model",
        "opus",
        "--effort",
        "high",
        "--max-turns",
        "5",
        "--max-budget-usd",
        "2.5",
        "--resume",
        "abc",
        "--add-dir",
        "/x",
    ]


@pytest.mark.parametrize("effort", ["", "default", "turbo"])
def test_claude_runs_without_effort_flag_when_effort_is_unset_or_unknown(effort: str) -> None:
    assert "--effort" not in claude.build_argv(TurnRequest(prompt="x", effort=effort))


def test_claude_appends_a_small_system_prompt_as_text() -> None:
    argv = claude.build_argv(TurnRequest(prompt="x", append_system_prompt="MEMORY"))

    assert argv[argv.index("--append-system-prompt") + 1] == "MEMORY"


def test_claude_appends_the_system_prompt_file_when_one_is_given(tmp_path: Path) -> None:
    big = "m" * (ARGV_TEXT_LIMIT + 1)
    request = TurnRequest(
        prompt="x", append_system_prompt=big, append_system_prompt_file=tmp_path / "append.md"
    )

    argv = claude.build_argv(request)

    assert argv[argv.index("--append-system-prompt-file") + 1] == str(tmp_path / "append.md")
    assert "--append-system-prompt" not in argv
    assert big not in argv


def test_claude_refuses_a_system_prompt_too_big_for_argv_without_a_file() -> None:
    request = TurnRequest(prompt="x", append_system_prompt="m" * (ARGV_TEXT_LIMIT + 1))

    with pytest.raises(ValueError, match="append_system_prompt_file"):
        claude.build_argv(request)


@pytest.mark.parametrize(
    ("mode", "flag"),
    [
        (PermissionMode.DEFAULT, None),
        (PermissionMode.PLAN, "plan"),
        (PermissionMode.ACCEPT_EDITS, "acceptEdits"),
        (PermissionMode.BYPASS, "bypassPermissions"),
    ],
)
def test_claude_permission_mode_flag_follows_the_mode(
    mode: PermissionMode, flag: str | None
) -> None:
    argv = claude.build_argv(TurnRequest(prompt="x", permission_mode=mode))

    value = argv[argv.index("--permission-mode") + 1] if "--permission-mode" in argv else None
    assert value == flag


def test_claude_as_root_in_bypass_mode_gets_is_sandbox_like_the_recorded_run() -> None:
    recorded = json.loads((FIXTURES / "claude-tool.meta.json").read_text())["env"]
    request = TurnRequest(prompt="x", permission_mode=PermissionMode.BYPASS)

    assert claude.provider_env(request, is_root=True) == {"IS_SANDBOX": recorded["IS_SANDBOX"]}


@pytest.mark.parametrize(
    ("is_root", "mode"),
    [(False, PermissionMode.BYPASS), (True, PermissionMode.DEFAULT), (True, PermissionMode.PLAN)],
)
def test_claude_gets_no_is_sandbox_unless_root_in_bypass_mode(
    is_root: bool, mode: PermissionMode
) -> None:
    assert claude.provider_env(TurnRequest(prompt="x", permission_mode=mode), is_root=is_root) == {}


# -- Codex ----------------------------------------------------------------------------


def test_codex_reads_the_prompt_and_the_appended_context_from_stdin() -> None:
    request = TurnRequest(prompt="fix it", append_system_prompt="MEMORY")

    argv = codex.build_argv(request)

    assert argv[-1] == "-"
    assert "fix it" not in argv
    assert codex.stdin_text(request) == "fix it\n\nMEMORY"


def test_codex_resume_puts_all_options_before_resume_and_the_session_id() -> None:
    request = TurnRequest(prompt="x", session_id="t-1", model="gpt-5.5", effort="high")

    argv = codex.build_argv(request)

    assert argv == [
        "codex",
        "exec",
        "--json",
        "--color",
        "never",
        "--skip-git-repo-check",
        "-m",
        "gpt-5.5",
        "-c",
        "model_reasoning_effort=high",
        "resume",
        "t-1",
        "-",
    ]


@pytest.mark.parametrize(
    ("mode", "flags"),
    [
        (PermissionMode.DEFAULT, []),
        (PermissionMode.PLAN, ["-s", "read-only"]),
        (PermissionMode.ACCEPT_EDITS, ["-s", "workspace-write"]),
        (PermissionMode.BYPASS, ["--dangerously-bypass-approvals-and-sandbox"]),
    ],
)
def test_codex_sandbox_follows_the_permission_mode(mode: PermissionMode, flags: list[str]) -> None:
    argv = codex.build_argv(TurnRequest(prompt="x", permission_mode=mode))

    assert argv[6:-1] == flags


def test_codex_default_effort_passes_no_config_override() -> None:
    assert "-c" not in codex.build_argv(TurnRequest(prompt="x", effort="default"))


# -- Gemini ---------------------------------------------------------------------------


def test_gemini_reads_the_prompt_and_the_appended_context_from_stdin() -> None:
    request = TurnRequest(prompt="fix it", append_system_prompt="MEMORY", effort="high")

    argv = gemini.build_argv(request)

    assert argv == ["gemini", "--output-format", "stream-json"]
    assert gemini.stdin_text(request) == "fix it\n\nMEMORY"


@pytest.mark.parametrize(
    ("mode", "approval"),
    [
        (PermissionMode.DEFAULT, None),
        (PermissionMode.PLAN, "plan"),
        (PermissionMode.ACCEPT_EDITS, "auto_edit"),
        (PermissionMode.BYPASS, "yolo"),
    ],
)
def test_gemini_approval_mode_follows_the_permission_mode(
    mode: PermissionMode, approval: str | None
) -> None:
    argv = gemini.build_argv(TurnRequest(prompt="x", permission_mode=mode))

    value = argv[argv.index("--approval-mode") + 1] if "--approval-mode" in argv else None
    assert value == approval


def test_gemini_runs_as_one_process_in_a_trusted_workspace_like_the_recorded_run() -> None:
    recorded = json.loads((FIXTURES / "gemini-interrupt.meta.json").read_text())["env"]

    env = gemini.provider_env(TurnRequest(prompt="x"), is_root=False)

    assert env["GEMINI_CLI_NO_RELAUNCH"] == recorded["GEMINI_CLI_NO_RELAUNCH"]
    assert env["GEMINI_CLI_TRUST_WORKSPACE"] == recorded["GEMINI_CLI_TRUST_WORKSPACE"]


def test_spec_for_accepts_the_provider_name_as_a_string() -> None:
    spec = spec_for("gemini")

    assert spec.executable == "gemini"
    assert spec.build_argv(TurnRequest(prompt="x"), "/opt/gemini")[0] == "/opt/gemini"
