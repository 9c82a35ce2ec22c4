"""``ductor doctor``: check what an agent needs and say how to fix what is missing."""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import stat
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from ductor import agents, config, sandbox
from ductor.cli.context import Context
from ductor.clipath import PROVIDER_COMMANDS, find_cli, logged_in, unit_path
from ductor.config.secrets import MAX_SECRET_BYTES
from ductor.errors import ConfigError, ExitCode
from ductor.paths import Mode, systemd_version
from ductor.units import Manager, systemd_is_pid1, unescape, unit_dir, unit_name

MIN_SYSTEMD = 252
TEMPLATES = ("ductor.target", "ductor@.target")


class Level(StrEnum):
    OK = "ok"
    INFO = "info"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    detail: str
    fix: str = ""


def check_systemd(manager: Manager, problem: str | None, *, booted: bool) -> list[Check]:
    """systemd's version, and whether its manager runs at all: an installed systemd is
    not a running one (a container started without it as init has systemctl too).
    ``problem`` is :meth:`Manager.problem`; ``booted``, whether PID 1 is systemd."""
    version = systemd_version()
    if version is None:
        return [Check("systemd", Level.FAIL, "systemctl not found", "apt-get install systemd")]
    if not booted:
        return [
            Check(
                "systemd",
                Level.FAIL,
                f"version {version} is installed, but {problem}",
                "boot the machine (or start the container) with systemd as PID 1; until"
                " then an agent runs only in the foreground: ductor-agent --name NAME",
            )
        ]
    checks = [
        Check(
            "systemd",
            Level.OK if version >= MIN_SYSTEMD else Level.FAIL,
            f"version {version}" + ("" if version >= MIN_SYSTEMD else f" (< {MIN_SYSTEMD})"),
            "" if version >= MIN_SYSTEMD else "upgrade to Debian 12 / Ubuntu 24.04 or newer",
        )
    ]
    scope = " ".join(manager.scope)
    checks.append(
        Check(
            "service manager",
            Level.OK if problem is None else Level.FAIL,
            f"systemctl {scope}: answers" if problem is None else problem,
            ""
            if problem is None
            else (
                "log in through a session (ssh or console) or run `sudo loginctl enable-linger"
                f" {getpass.getuser()}`, then check `systemctl --user status`"
                if manager.mode is Mode.USER
                else "check `systemctl status` and the boot log (journalctl -b)"
            ),
        )
    )
    return checks


def check_linger(mode: Mode) -> list[Check]:
    if mode is Mode.SYSTEM:
        return []
    user = getpass.getuser()
    lingering = Path("/var/lib/systemd/linger", user).exists()
    return [
        Check(
            "lingering",
            Level.OK if lingering else Level.WARN,
            "agents keep running after you log out"
            if lingering
            else "agents stop when your last session ends",
            "" if lingering else f"sudo loginctl enable-linger {user}",
        )
    ]


def manager_environment(manager: Manager) -> dict[str, str]:
    """The environment the manager gives its units (PATH above all), or ours."""
    result = manager.systemctl("show-environment", check=False, timeout=15)
    env = dict(os.environ)
    if result.ok:
        env.pop("PATH", None)
        for line in result.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep and key in ("PATH", "HOME"):
                env[key] = value
    return env


def check_clis(ctx: Context, names: list[str]) -> list[Check]:
    from ductor.agent.dotenv import DotEnv, dotenv_file

    used: set[str] = set()
    dotenv: dict[str, str] = {}  # the agents' .env files: an API key there logs a CLI in
    for name in names:
        try:
            used.add(config.load_agent_config(ctx.paths, name).provider)
        except ConfigError:
            continue
        dotenv = {**DotEnv(dotenv_file(ctx.paths, name)).values(), **dotenv}
    env = manager_environment(ctx.manager)
    checks = [Check("PATH for the CLIs", Level.INFO, unit_path(env))]
    for provider in sorted(PROVIDER_COMMANDS):
        path = find_cli(provider, env)
        level_missing = Level.FAIL if provider in used else Level.INFO
        if path is None:
            checks.append(
                Check(
                    f"{provider} CLI",
                    level_missing,
                    "not installed" + (" — an agent uses it" if provider in used else ""),
                    INSTALL_HINTS[provider],
                )
            )
            continue
        ok, where = logged_in(provider, env, dotenv)
        checks.append(
            Check(
                f"{provider} CLI",
                Level.OK if ok else (Level.WARN if provider in used else Level.INFO),
                f"{path}; " + (f"credentials: {where}" if ok else f"not logged in (no {where})"),
                "" if ok else LOGIN_HINTS[provider],
            )
        )
    return checks


INSTALL_HINTS = {
    "claude": "npm install -g @anthropic-ai/claude-code",
    "codex": "npm install -g @openai/codex",
    "gemini": "npm install -g @google/gemini-cli",
}
LOGIN_HINTS = {
    "claude": "run `claude` once and log in (or put ANTHROPIC_API_KEY in the agent's .env)",
    "codex": "codex login",
    "gemini": "run `gemini` once and log in (or put GEMINI_API_KEY in the agent's .env)",
}


def check_config(ctx: Context, names: list[str]) -> list[Check]:
    checks: list[Check] = []
    targets: list[str | None] = list(names) or [None]
    for name in targets:
        label = f"config {name}" if name else "config"
        if name:
            problems = config.validate_all(ctx.paths, name)
        else:
            problems = config.validate_global(ctx.paths)
        checks.extend(
            Check(label, Level.FAIL, str(p), f"edit {p.file}" if p.file else "") for p in problems
        )
        if not problems:
            checks.append(Check(label, Level.OK, "valid"))
    return checks


def secret_file_problem(file: Path) -> str | None:
    """Why ``file`` does not hold a usable secret ("is missing", "is empty", ...), or
    None. A FIFO or a device is never opened: it could block or never end."""
    try:
        st = file.stat()
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the stat
            return "is not a regular file"
        data = os.read(fd, MAX_SECRET_BYTES + 1)
    finally:
        os.close(fd)
    if not data.strip():
        return "is empty"
    return None


def check_credentials(ctx: Context, names: list[str]) -> list[Check]:
    checks = []
    me = os.getuid()
    for name in names:
        directory = ctx.paths.agent_credentials(name)
        try:
            cfg = config.load_agent_config(ctx.paths, name)
        except ConfigError:
            continue
        needed = [config.TELEGRAM_TOKEN] if "telegram" in cfg.transports else []
        for key in needed:
            loaded = ctx.paths.credentials_dir and ctx.paths.credentials_dir / key
            file = loaded if loaded and loaded.is_file() else directory / key
            problem = secret_file_problem(file)
            if problem is not None:
                checks.append(
                    Check(
                        f"credentials {name}",
                        Level.FAIL,
                        f"{file} {problem}",
                        f"umask 077; $EDITOR {file}",
                    )
                )
        if not directory.is_dir():
            continue
        for file in sorted(directory.iterdir()):
            try:
                st = file.stat()
            except OSError as exc:
                checks.append(Check(f"credentials {name}", Level.FAIL, f"{file}: {exc.strerror}"))
                continue
            loose = stat.S_IMODE(st.st_mode) & 0o077
            if not stat.S_ISREG(st.st_mode):
                if file.name not in needed:  # a needed one is reported above
                    checks.append(
                        Check(
                            f"credentials {name}",
                            Level.FAIL,
                            f"{file} is not a regular file",
                            f"rm {file}, then write the secret into a plain file",
                        )
                    )
            elif loose or st.st_uid != me:
                checks.append(
                    Check(
                        f"credentials {name}",
                        Level.FAIL,
                        f"{file} is mode {stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid}",
                        f"chown {me} {file} && chmod 600 {file}",
                    )
                )
            elif file.name not in needed or secret_file_problem(file) is None:
                checks.append(Check(f"credentials {name}", Level.OK, f"{file.name}: mode 0600"))
    return checks


def wired_credentials(ctx: Context, name: str) -> list[tuple[str, str, Path]]:
    """(unit, credential id, file) for each secret a unit of the agent reads in system
    mode: the manager (root) reads it for the unit with ``LoadCredential=``, since the
    unit's account cannot read root's credentials directory."""
    from ductor.agent.dotenv import DOTENV_CREDENTIAL, dotenv_file
    from ductor.cron.jobs import JobStore
    from ductor.cron.sync import service_unit

    cfg = config.load_agent_config(ctx.paths, name)
    directory = ctx.paths.agent_credentials(name)
    wanted: list[tuple[str, str, Path]] = []
    if "telegram" in cfg.transports:
        token = directory / config.TELEGRAM_TOKEN
        unit = unit_name("ductor-telegram@.service", name)
        wanted.append((unit, config.TELEGRAM_TOKEN, token))
    if "matrix" in cfg.transports:
        password = directory / config.MATRIX_PASSWORD
        wanted.append((unit_name("ductor-matrix@.service", name), config.MATRIX_PASSWORD, password))
    env = dotenv_file(ctx.paths, name)
    if env.exists():
        wanted.append((unit_name("ductor-agent@.service", name), DOTENV_CREDENTIAL, env))
        try:
            jobs = JobStore(ctx.paths.agent_state(name)).load()
        except ConfigError:
            jobs = {}  # reported by the config checks
        wanted += [(service_unit(name, job), DOTENV_CREDENTIAL, env) for job in sorted(jobs)]
    return wanted


def loaded_credentials(manager: Manager, unit: str) -> list[str]:
    """The unit's ``LoadCredential=`` values (``ID:PATH``), from its files and drop-ins as
    ``systemctl cat`` shows them (``systemctl show`` prints them as "[unprintable]" on
    systemd 252), with the instance specifiers filled in."""
    result = manager.systemctl("cat", "--", unit, check=False, timeout=15)
    instance = unit.partition("@")[2].rpartition(".")[0]
    values: list[str] = []
    for line in result.stdout.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.strip() != "LoadCredential":
            continue
        value = value.strip()
        if not value:
            values.clear()  # an empty assignment resets the list
            continue
        values.append(value.replace("%i", instance).replace("%I", unescape(instance)))
    return values


def check_unit_credentials(ctx: Context, names: list[str]) -> list[Check]:
    """System mode: can each unit read its secrets? Not what root can read (root reads
    everything), but what the manager hands to the unit's account."""
    if ctx.mode is not Mode.SYSTEM:
        return []  # user units run as the user who owns the files (checked above)
    checks: list[Check] = []
    for name in names:
        try:
            wanted = wired_credentials(ctx, name)
        except ConfigError:
            continue
        loaded: dict[str, list[str]] = {}
        for unit, key, file in wanted:
            if unit not in loaded:
                loaded[unit] = loaded_credentials(ctx.manager, unit)
            wired = f"{key}:{file}" in loaded[unit]
            checks.append(
                Check(
                    f"unit credentials {name}",
                    Level.OK if wired else Level.FAIL,
                    f"{unit} gets {file.name} as ${{CREDENTIALS_DIRECTORY}}/{key}"
                    if wired
                    else f"{unit} cannot read {file}: its account is not root and the"
                    " manager does not hand it over (LoadCredential=)",
                    ""
                    if wired
                    else f"./install.sh --system && ductor --system cron sync {name}"
                    f" && systemctl restart {agents.target(name)}",
                )
            )
    return checks


def check_units(ctx: Context, names: list[str]) -> list[Check]:
    manager = ctx.manager
    scope = " ".join(manager.scope)
    installed = agents.installed_templates(manager, TEMPLATES)
    missing = [t for t in TEMPLATES if t not in installed]
    checks = [
        Check(
            "units installed",
            Level.FAIL if missing else Level.OK,
            f"missing: {', '.join(missing)}" if missing else ", ".join(TEMPLATES),
            "./install.sh" + (" --system" if ctx.mode is Mode.SYSTEM else "") if missing else "",
        )
    ]
    if not names:
        return checks
    shown = manager.show([agents.target(n) for n in names], ["UnitFileState", "ActiveState"])
    for name, props in zip(names, shown, strict=True):
        enabled = props.get("UnitFileState", "")
        checks.append(
            Check(
                f"agent {name}",
                Level.OK if enabled == "enabled" else Level.WARN,
                f"{agents.target(name)}: {enabled or 'unknown'},"
                f" {props.get('ActiveState', 'unknown')}",
                ""
                if enabled == "enabled"
                else f"systemctl {scope} enable --now {agents.target(name)}",
            )
        )
    return checks


def check_sockets(ctx: Context, names: list[str]) -> list[Check]:
    checks: list[Check] = []
    if not names:
        return checks
    socket_unit = "ductor-agent@.socket"
    has_socket_unit = socket_unit in agents.installed_templates(ctx.manager, [socket_unit])
    for name in names:
        path = ctx.paths.agent_socket(name)
        if not path.exists():
            if has_socket_unit:
                checks.append(
                    Check(
                        f"socket {name}",
                        Level.WARN,
                        f"{path} does not exist (agent not started)",
                        f"systemctl {' '.join(ctx.manager.scope)} start {agents.target(name)}",
                    )
                )
            continue
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(str(path))
            checks.append(Check(f"socket {name}", Level.OK, f"{path} accepts connections"))
        except OSError as exc:
            checks.append(
                Check(
                    f"socket {name}",
                    Level.FAIL,
                    f"{path}: {exc.strerror}",
                    f"systemctl {' '.join(ctx.manager.scope)} restart ductor-agent@{name}.socket",
                )
            )
    return checks


MARK = {Level.OK: "ok", Level.INFO: "--", Level.WARN: "!!", Level.FAIL: "XX"}


def check_pending(ctx: Context, names: list[str]) -> list[Check]:
    """One line per setting a config file sets that ductor does not act on yet."""
    from ductor.config.pending import inert_settings_of

    checks: list[Check] = []
    for name in names:
        for setting in inert_settings_of(ctx.paths, name):
            checks.append(Check(f"config {name}", Level.INFO, str(setting)))
    return checks


def check_matrix_rooms(ctx: Context, names: list[str]) -> list[Check]:
    """The Matrix rooms a change of the allowlists would make the bot leave: it stays in
    them until a second reload confirms (docs/matrix.md)."""
    from ductor.transports.matrix.rooms import would_leave

    checks: list[Check] = []
    for name in names:
        rooms = would_leave(ctx.paths.agent_state(name) / "matrix")
        if rooms:
            checks.append(
                Check(
                    f"matrix rooms {name}",
                    Level.WARN,
                    f"the changed allowlists no longer allow {len(rooms)} room(s) the bot is"
                    f" in: {', '.join(rooms)}",
                    f"to leave them: ductor agent reload {name} (again); to stay: restore"
                    " allowed_users / allowed_rooms",
                )
            )
    return checks


def check_sandbox(ctx: Context, names: list[str]) -> list[Check]:
    """Each agent's sandbox, what its CLIs can see, whether the drop-in on disk says the
    same, and which media tools they can run."""
    checks: list[Check] = []
    directory = unit_dir(ctx.mode)
    for name in names:
        try:
            agent_config = config.load_agent_config(ctx.paths, name)
        except ConfigError:
            continue  # reported by check_config
        label = f"sandbox {name}"
        wanted = sandbox.dropin(ctx.paths, name, agent_config)
        unit = unit_name(agents.AGENT_SERVICE, name)
        try:
            written = (directory / f"{unit}.d" / sandbox.DROPIN_NAME).read_text(encoding="utf-8")
        except OSError:
            written = ""
        if (wanted and wanted not in written) or (written and not wanted):
            systemctl = "systemctl --user" if ctx.mode is Mode.USER else "systemctl"
            fix = f"ductor agent sync {name} && {systemctl} restart {unit}"
            detail = "the units do not have the configured sandbox yet"
            checks.append(Check(label, Level.WARN, detail, fix))
        if wanted:
            bound = sandbox.mounts(ctx.paths, name, agent_config)
            seen = [f"\n       {m.describe()}" for m in bound if m.path.exists()]
            missing = [str(m.path) for m in bound if not m.path.exists()]
            detail = "workspace: the home is empty and read-only but for" + "".join(seen)
            if missing:
                detail += "\n       not bound, missing: " + ", ".join(missing)
            checks.append(Check(label, Level.OK, detail))
        else:
            checks.append(Check(label, Level.INFO, sandbox.summary(agent_config)))
        tools = sandbox.media_tools(ctx.paths, name, agent_config)
        have = [tool for tool, path in tools.items() if path]
        missing = [tool for tool, path in tools.items() if not path]
        detail = f"available to its CLIs: {', '.join(have) or 'none'}"
        if missing:
            detail += f"; not available: {', '.join(missing)} (docs/media-tools.md)"
        checks.append(Check(f"media tools {name}", Level.INFO, detail))
    return checks


def check_webhooks(
    ctx: Context, names: list[str], manager: Manager, directory: Path
) -> list[Check]:
    """The webhook units of each agent with webhooks on: the socket's drop-in says what
    the config says, the socket listens there, and neither it nor the service failed."""
    from ductor.webhooks import units as webhook_units

    checks: list[Check] = []
    systemctl = f"systemctl {' '.join(manager.scope)}"
    for name in names:
        try:
            webhooks = config.load_agent_config(ctx.paths, name).webhooks
        except ConfigError:
            continue  # reported by check_config
        if not webhooks.enabled:
            continue
        label = f"webhooks {name}"
        address = webhook_units.listen_address(webhooks)
        socket_unit = unit_name(webhook_units.SOCKET_TEMPLATE, name)
        service = socket_unit.removesuffix(".socket") + ".service"
        restart = f"{systemctl} restart {socket_unit}"
        try:
            written = (directory / f"{socket_unit}.d" / "10-ductor.conf").read_text("utf-8")
        except OSError:
            written = ""
        if webhook_units.socket_dropin(webhooks) not in written:
            detail = f"the drop-in of {socket_unit} does not say listen = {address!r}"
            checks.append(Check(label, Level.WARN, detail, f"ductor agent sync {name}"))
            continue
        props, service_props = manager.show(
            [socket_unit, service], ["ActiveState", "Result", "Listen"]
        )
        failed = [
            f"{unit} failed ({shown.get('Result') or 'unknown'})"
            for unit, shown in ((socket_unit, props), (service, service_props))
            if shown.get("ActiveState") == "failed"
        ]
        listening = props.get("Listen", "").split(" (")[0]
        if failed:
            fix = f"journalctl {' '.join(manager.scope)} -u {service} -u {socket_unit}; then"
            fix += f" {systemctl} reset-failed {socket_unit} {service} && {restart}"
            checks.append(Check(label, Level.FAIL, "; ".join(failed), fix))
        elif props.get("ActiveState") != "active":
            detail = f"{socket_unit} is {props.get('ActiveState') or 'unknown'}: nothing listens"
            checks.append(
                Check(label, Level.WARN, detail, f"{systemctl} start {agents.target(name)}")
            )
        elif listening != address:
            detail = f"{socket_unit} listens on {listening or 'nothing'}, the config says {address}"
            checks.append(
                Check(label, Level.WARN, detail, f"{systemctl} daemon-reload && {restart}")
            )
        else:
            checks.append(Check(label, Level.OK, f"{socket_unit} listens on {address}"))
    return checks


def run(ctx: Context, args: argparse.Namespace) -> int:
    names = [agents.require(ctx.paths, args.name)] if args.name else agents.list_agents(ctx.paths)
    problem = ctx.manager.problem()
    manager_runs = problem is None
    booted = manager_runs or systemd_is_pid1()
    checks = [
        *check_systemd(ctx.manager, problem, booted=booted),
        *(check_linger(ctx.mode) if booted else []),
        *check_config(ctx, names),
        *check_pending(ctx, names),
        *check_matrix_rooms(ctx, names),
        *check_credentials(ctx, names),
        *(check_unit_credentials(ctx, names) if manager_runs else []),
        *check_clis(ctx, names),
        *check_sandbox(ctx, names),
    ]
    if manager_runs:
        checks += [*check_units(ctx, names), *check_sockets(ctx, names)]
        checks += check_webhooks(ctx, names, ctx.manager, unit_dir(ctx.mode))
    else:
        checks.append(
            Check("units", Level.INFO, "not checked: no service manager to ask (see above)")
        )
    return report(ctx, checks)


def report(ctx: Context, checks: list[Check]) -> int:
    """Print the checks; the exit code. A warning is a problem too: "Everything looks
    fine" and exit 0 only when no check says otherwise."""
    problems = [c for c in checks if c.level in (Level.FAIL, Level.WARN)]
    if ctx.json:
        ctx.dump({"ok": not problems, "checks": [asdict(c) for c in checks]})
    else:
        for check in checks:
            ctx.print(f"[{MARK[check.level]}] {check.name}: {check.detail}")
            if check.fix and check.level in (Level.FAIL, Level.WARN):
                ctx.print(f"     fix: {check.fix}")
        ctx.print()
        ctx.print(f"{len(problems)} problem(s) found." if problems else "Everything looks fine.")
    if any(c.name.startswith("config") and c.level is Level.FAIL for c in checks):
        return ExitCode.CONFIG
    return ExitCode.FAILURE if problems else ExitCode.OK
