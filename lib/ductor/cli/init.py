"""``ductor init`` / ``ductor agent add``: create an agent, asking on a terminal."""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ductor import agents, config
from ductor.cli.args import refuse_secret
from ductor.cli.context import Context
from ductor.clipath import PROVIDER_COMMANDS, find_cli
from ductor.errors import CommandError, UsageError
from ductor.log import register_secret
from ductor.paths import Mode, validate_agent_name
from ductor.providers import models

TOKEN_FORMAT = re.compile(r"^\d{5,}:[A-Za-z0-9_-]{30,}$")
# Models the pinned CLIs know (providers/models.py): Codex's is its own default.
DEFAULT_MODELS = {
    "claude": "sonnet",
    "codex": next(m.id for m in models.CODEX_FALLBACK if m.is_default),
    "gemini": "gemini-2.5-pro",
}
TOKEN_ENV = "DUCTOR_TELEGRAM_TOKEN"  # noqa: S105 - a variable name
MATRIX_PASSWORD_ENV = "DUCTOR_MATRIX_PASSWORD"  # noqa: S105 - a variable name
MATRIX_USER = re.compile(r"^@[a-z0-9._=/+-]+:[A-Za-z0-9.-]+(:\d+)?$")
MATRIX_ROOM = re.compile(r"^[!#][^:\s]+(:[A-Za-z0-9.-]+(:\d+)?)?$")

HELP_BOT = """\
Telegram bot token
  In Telegram, open a chat with @BotFather, send /newbot and follow the questions.
  BotFather answers with a token like 123456789:AAE...; paste it here (input is hidden).
  It is stored in {where} (mode 0600), never in the config file."""
HELP_USERS = """\
Allowed Telegram user id(s)
  Only these users may talk to the agent. To find your id, message @userinfobot
  (or @RawDataBot) in Telegram; it replies with your numeric id. Several ids: 1,2,3."""
HELP_PROVIDER = """\
Default AI CLI: claude, codex or gemini. Installed here: {installed}."""
HELP_MATRIX = """\
Matrix
  The bot needs its own account on your homeserver (e.g. https://matrix.example.org),
  its user id (@bot:example.org) and password. The password is stored in {where}
  (mode 0600), never in the config file; the first start logs in and keeps the token.
  Only the allowed users (full ids like @you:example.org) may talk to it."""
HELP_TZ = """\
Time zone for cron jobs, heartbeats and quiet hours (IANA name, e.g. Europe/Berlin)."""


def add_arguments(parser: argparse.ArgumentParser, *, default_name: str | None) -> None:
    if default_name is None:
        parser.add_argument("name", help="agent name (lower-case letters, digits, _ or -)")
    else:
        parser.add_argument("name", nargs="?", default=default_name, help="agent name")
    parser.add_argument(
        "--telegram-token-file",
        metavar="FILE",
        help=f"read the bot token from FILE ('-' = stdin); or set ${TOKEN_ENV}."
        " Never pass a token as an argument: argv is visible to every user.",
    )
    refuse_secret(
        parser,
        "--telegram-token",
        "--token",
        "--bot-token",
        instead=f"Put it in a file and give --telegram-token-file FILE ('-' reads it from"
        f" stdin), or set ${TOKEN_ENV}; on a terminal, leave it out and you are asked.",
    )
    refuse_secret(
        parser,
        "--matrix-password",
        "--password",
        instead=f"Put it in a file and give --matrix-password-file FILE ('-' reads it from"
        f" stdin), or set ${MATRIX_PASSWORD_ENV}; on a terminal, leave it out and you are"
        " asked.",
    )
    parser.add_argument(
        "--user-id",
        dest="user_ids",
        metavar="ID[,ID...]",
        action="append",
        help="allowed Telegram user id(s); repeatable",
    )
    parser.add_argument("--group-id", dest="group_ids", metavar="ID", action="append")
    parser.add_argument(
        "--transport",
        dest="transports",
        choices=("telegram", "matrix"),
        action="append",
        help="telegram (default) and/or matrix; repeat for both, the first is the primary",
    )
    parser.add_argument("--homeserver", metavar="URL", help="Matrix homeserver URL")
    parser.add_argument("--matrix-user-id", metavar="@BOT:SERVER", help="the bot's Matrix id")
    parser.add_argument(
        "--matrix-password-file",
        metavar="FILE",
        help=f"read the bot's Matrix password from FILE ('-' = stdin); or set"
        f" ${MATRIX_PASSWORD_ENV}",
    )
    parser.add_argument(
        "--matrix-allowed-user",
        dest="matrix_users",
        metavar="@YOU:SERVER",
        action="append",
        help="a Matrix user who may talk to the bot; repeatable",
    )
    parser.add_argument(
        "--matrix-room",
        dest="matrix_rooms",
        metavar="ROOM",
        action="append",
        help="a Matrix group room (id or alias) the bot serves; repeatable",
    )
    parser.add_argument("--provider", choices=sorted(PROVIDER_COMMANDS))
    parser.add_argument("--model", help="default model (default depends on the provider)")
    parser.add_argument("--timezone", help="IANA time zone (default: this machine's)")
    parser.add_argument(
        "--description", default="", help="one line on what the agent is for (the roster)"
    )
    parser.add_argument(
        "--non-interactive",
        action="store_true",
        help="never ask; fail with the list of missing values instead",
    )
    parser.add_argument("--no-enable", action="store_true", help="do not enable ductor@NAME.target")
    parser.add_argument(
        "--start",
        action="store_true",
        help="also start the agent now (when a service manager runs)",
    )


def _ids(values: list[str] | None, what: str) -> tuple[int, ...]:
    ids: list[int] = []
    for value in values or []:
        for part in value.replace(" ", ",").split(","):
            if not part:
                continue
            try:
                ids.append(int(part))
            except ValueError:
                raise UsageError(f"{what} must be numbers, got {part!r}") from None
    return tuple(ids)


def local_timezone() -> str:
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and _valid_tz(tz):
        return tz
    try:
        target = str(Path("/etc/localtime").readlink())
        name = target.split("zoneinfo/", 1)[1]
        if _valid_tz(name):
            return name
    except (OSError, IndexError):
        pass
    try:
        name = Path("/etc/timezone").read_text(encoding="utf-8").strip()
        if _valid_tz(name):
            return name
    except OSError:
        pass
    return "UTC"


def models_of(provider: str) -> list[str]:
    """The model names ``provider``'s CLI knows, as ``/model`` offers them."""
    return sorted(
        m for m in models.known_model_ids() if str(models.provider_for_model(m)) == provider
    )


def check_model(provider: str, name: str) -> str:
    """``name`` as the CLI spells it; a UsageError with the list when it has no such model
    (a default a CLI does not know is a warning, or a failure, on every turn)."""
    found = models.canonical_model(name, models_of(provider))
    if found is None or str(models.provider_for_model(found)) != provider:
        raise UsageError(
            f"the {provider} CLI has no model {name!r}; choose one of: "
            + ", ".join(models_of(provider))
        )
    return found


def _valid_tz(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _ask(
    prompt: str, check: Callable[[str], str | None], default: str = "", secret: bool = False
) -> str:
    while True:
        shown = f"{prompt} [{default}]: " if default else f"{prompt}: "
        try:
            answer = getpass.getpass(shown) if secret else input(shown)
        except EOFError:
            raise UsageError("no answer (end of input)") from None
        answer = answer.strip() or default
        problem = check(answer)
        if problem is None:
            return answer
        print(f"  {problem}", file=sys.stderr)


def _model_problem(provider: str, value: str) -> str | None:
    try:
        check_model(provider, value)
    except UsageError as exc:
        return str(exc)
    return None


def _check_token(value: str) -> str | None:
    if TOKEN_FORMAT.fullmatch(value):
        return None
    return "that does not look like a bot token (digits, ':', then 30+ letters/digits/_/-)"


def _check_ids(value: str) -> str | None:
    try:
        return None if _ids([value], "user ids") else "give at least one id"
    except UsageError as exc:
        return str(exc)


def _check_homeserver(value: str) -> str | None:
    if value.startswith(("https://", "http://")) and len(value) > len("https://"):
        return None
    return "give the homeserver's URL, e.g. https://matrix.example.org"


def _check_matrix_user(value: str) -> str | None:
    return (
        None
        if MATRIX_USER.fullmatch(value)
        else f"{value!r} is not a Matrix id like @bot:example.org"
    )


def _check_matrix_users(value: str) -> str | None:
    users = _split(value)
    if not users:
        return "give at least one user id"
    return next((p for p in map(_check_matrix_user, users) if p), None)


def _split(value: str) -> list[str]:
    return [part for part in re.split(r"[,\s]+", value.strip()) if part]


def _matrix_list(values: list[str] | None, check: Callable[[str], str | None]) -> tuple[str, ...]:
    items = [item for value in values or [] for item in _split(value)]
    for item in items:
        problem = check(item)
        if problem:
            raise UsageError(problem)
    return tuple(dict.fromkeys(items))


def _read_secret_file(value: str, what: str) -> str:
    if value == "-":
        return sys.stdin.readline().strip()
    try:
        return Path(value).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {value}: {exc.strerror}") from None


def run(ctx: Context, args: argparse.Namespace) -> int:
    name = validate_agent_name(args.name)
    if agents.exists(ctx.paths, name):
        raise UsageError(
            f"agent {name!r} already exists ({ctx.paths.agent_config(name)});"
            f" see `ductor status {name}`"
        )
    interactive = not args.non_interactive and sys.stdin.isatty()
    installed = [p for p in sorted(PROVIDER_COMMANDS) if find_cli(p)]

    token = None
    if args.telegram_token_file:
        token = _read_secret_file(args.telegram_token_file, "token")
    elif os.environ.get(TOKEN_ENV):
        token = os.environ[TOKEN_ENV].strip()
    user_ids = _ids(args.user_ids, "user ids")
    provider = args.provider
    timezone = args.timezone
    matrix_given = bool(args.homeserver or args.matrix_user_id or args.matrix_users)
    transports = tuple(dict.fromkeys(args.transports or ())) or (
        ("matrix",) if matrix_given and not (token or user_ids) else ("telegram",)
    )
    telegram = "telegram" in transports
    matrix = _MatrixAnswers.from_args(args) if "matrix" in transports else None

    if interactive:
        print(f"Creating agent {name!r}.\n")
        if matrix is not None:
            matrix.ask(ctx.paths.agent_credentials(name) / config.MATRIX_PASSWORD)
    if interactive and telegram:
        if not token:
            where = ctx.paths.agent_credentials(name) / "telegram-token"
            print(HELP_BOT.format(where=where))
            token = _ask("Bot token", _check_token, secret=True)
        if not user_ids:
            print(HELP_USERS)
            user_ids = _ids([_ask("User id(s)", _check_ids)], "user ids")
    if interactive:
        if not provider:
            print(HELP_PROVIDER.format(installed=", ".join(installed) or "none yet"))
            provider = _ask(
                "Provider",
                lambda v: None if v in PROVIDER_COMMANDS else "choose claude, codex or gemini",
                default=installed[0] if installed else "claude",
            )
        if not args.model:
            args.model = _ask("Model", partial(_model_problem, provider), DEFAULT_MODELS[provider])
        if not timezone:
            print(HELP_TZ)
            timezone = _ask(
                "Time zone",
                lambda v: None if _valid_tz(v) else f"unknown time zone {v!r}",
                default=local_timezone(),
            )
    else:
        missing = []
        if telegram and not token:
            missing.append(f"--telegram-token-file FILE (or ${TOKEN_ENV})")
        if telegram and not user_ids:
            missing.append("--user-id ID")
        if matrix is not None:
            missing += matrix.missing()
        if missing:
            raise UsageError("missing " + ", ".join(missing) + " (not asking: no terminal)")
    provider = provider or "claude"
    model = check_model(provider, args.model or DEFAULT_MODELS[provider])
    timezone = timezone or local_timezone()
    if not _valid_tz(timezone):
        raise UsageError(f"unknown time zone {timezone!r} (use an IANA name like Europe/Berlin)")
    if telegram:
        assert token is not None
        register_secret(token)
        if _check_token(token):
            raise UsageError("the Telegram bot token has the wrong format (expected 123456:ABC...)")
    if matrix is not None:
        matrix.validate()

    created = agents.create(
        ctx.paths,
        agents.NewAgent(
            name=name,
            telegram_token=token if telegram else None,
            allowed_user_ids=user_ids if telegram else (),
            allowed_group_ids=_ids(args.group_ids, "group ids") if telegram else (),
            provider=provider,
            model=model,
            timezone=timezone,
            description=" ".join(args.description.split()),
            transports=transports,
            matrix_homeserver=matrix.homeserver if matrix else "",
            matrix_user_id=matrix.user_id if matrix else "",
            matrix_password=matrix.password if matrix else None,
            matrix_allowed_users=matrix.users if matrix else (),
            matrix_allowed_rooms=matrix.rooms if matrix else (),
        ),
    )
    print(f"Created agent {name!r}:")
    for path in created:
        print(f"  {path}")
    if provider not in installed:
        print(
            f"\nNote: the {provider} CLI is not installed where the units look for it;"
            " `ductor doctor` says how to fix that."
        )

    if not args.no_enable:
        try:
            agents.sync_target(ctx.paths, ctx.manager, name)
            ctx.manager.systemctl("enable", agents.target(name))
            print(f"\nEnabled {agents.target(name)}.")
        except CommandError as exc:
            print(f"\nCould not enable {agents.target(name)}: {exc}", file=sys.stderr)
            print(
                f"Run it later: systemctl {' '.join(ctx.manager.scope)} enable --now"
                f" {agents.target(name)}",
                file=sys.stderr,
            )
            return 1
    started = args.start and _start(ctx, name)
    flag = " ".join(ctx.manager.scope)
    system = "" if ctx.mode is Mode.USER else " --system"
    steps = [] if started else [(f"systemctl {flag} start {agents.target(name)}", "turn it on")]
    steps += [
        (f"ductor{system} doctor", "check the CLIs (installed, logged in), config and units"),
        (f"ductor{system} logs {name} -f", "watch it work"),
        (f"ductor{system} chat {name}", "talk to it from this terminal"),
    ]
    width = max(len(command) for command, _ in steps)
    print("\nNext:")
    for command, why in steps:
        print(f"  {command.ljust(width)}  # {why}")
    places = " and ".join(
        "in Telegram" if t == "telegram" else "in Matrix (invite it to a direct chat)"
        for t in transports
    )
    print(f"  and write to your bot {places}.")
    return 0


def _start(ctx: Context, name: str) -> bool:
    """Start the agent's target without waiting for it; False (and why) when no service
    manager runs here."""
    problem = ctx.manager.problem()
    if problem is not None:
        print(f"\nNot started: {problem}.")
        return False
    try:
        agents.sync_target(ctx.paths, ctx.manager, name)
        ctx.manager.systemctl("start", "--no-block", agents.target(name))
    except CommandError as exc:
        print(f"\nCould not start {agents.target(name)}: {exc}", file=sys.stderr)
        return False
    print(f"\nStarted {agents.target(name)}.")
    return True


class _MatrixAnswers:
    """The Matrix half of ``ductor init``: from the options, asked for on a terminal."""

    def __init__(
        self,
        homeserver: str,
        user_id: str,
        password: str,
        users: tuple[str, ...],
        rooms: tuple[str, ...],
    ) -> None:
        self.homeserver, self.user_id, self.password = homeserver, user_id, password
        self.users, self.rooms = users, rooms

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> _MatrixAnswers:
        password = ""
        if args.matrix_password_file:
            password = _read_secret_file(args.matrix_password_file, "password")
        elif os.environ.get(MATRIX_PASSWORD_ENV):
            password = os.environ[MATRIX_PASSWORD_ENV].strip()
        if password:
            register_secret(password)
        return cls(
            (args.homeserver or "").strip().rstrip("/"),
            (args.matrix_user_id or "").strip(),
            password,
            _matrix_list(args.matrix_users, _check_matrix_user),
            _matrix_list(args.matrix_rooms, _check_room),
        )

    def ask(self, where: Path) -> None:
        if self.homeserver and self.user_id and self.password and self.users:
            return
        print(HELP_MATRIX.format(where=where))
        if not self.homeserver:
            self.homeserver = _ask("Homeserver URL", _check_homeserver).rstrip("/")
        if not self.user_id:
            self.user_id = _ask("Bot user id", _check_matrix_user)
        if not self.password:
            self.password = _ask("Bot password", lambda v: None if v else "give it", secret=True)
            register_secret(self.password)
        if not self.users:
            self.users = tuple(_split(_ask("Allowed user id(s)", _check_matrix_users)))

    def missing(self) -> list[str]:
        wanted = [
            (self.homeserver, "--homeserver URL"),
            (self.user_id, "--matrix-user-id @BOT:SERVER"),
            (self.password, f"--matrix-password-file FILE (or ${MATRIX_PASSWORD_ENV})"),
            (self.users, "--matrix-allowed-user @YOU:SERVER"),
        ]
        return [option for value, option in wanted if not value]

    def validate(self) -> None:
        problem = _check_homeserver(self.homeserver) or _check_matrix_user(self.user_id)
        if problem:
            raise UsageError(problem)


def _check_room(value: str) -> str | None:
    return (
        None
        if MATRIX_ROOM.fullmatch(value)
        else f"{value!r} is not a room id (!id) or alias (#name:server)"
    )
