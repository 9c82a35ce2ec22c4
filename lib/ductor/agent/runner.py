"""Running one CLI turn as a child process and turning its output into events.

The child runs in its own session and process group, so a signal for the turn reaches
every descendant: ``/interrupt`` sends SIGINT to the group, ``/stop`` and an expired
timeout send SIGTERM and, after a grace period, SIGKILL. Its environment is built by
:func:`~ductor.providers.env.child_env` (nothing of the service manager's), its argv by
the provider module; no shell is involved anywhere.

Events come from the provider's parser, plus :class:`TimeoutStatus` for timeout warnings
and extensions. Whatever happens to the process, the stream ends with exactly one
:class:`~ductor.providers.events.Result` (an :class:`~ductor.providers.events.Error`
right before it when the turn failed); what the runner did to the process (a timeout, an
interrupt, a stop) is passed to the parser so the error says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import shlex
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ductor.agent.timeouts import NoticeKind, TimeoutController, TimeoutNotice, TimeoutPolicy
from ductor.clipath import find_cli, unit_path
from ductor.errors import DuctorError
from ductor.log import mask
from ductor.providers import Provider, ProviderSpec, TurnRequest, spec_for
from ductor.providers.env import ChildIdentity, child_env
from ductor.providers.events import ErrorKind, Event
from ductor.providers.stream import StreamParser

log = logging.getLogger(__name__)

STDOUT_LINE_LIMIT = 4 * 1024 * 1024  # one JSON line may carry a whole file's content
STDERR_KEEP = 64 * 1024  # the end of stderr is where the error is
STOP_GRACE = 2.0  # seconds between SIGTERM and SIGKILL when a timeout stops a turn
EXIT_DRAIN = 2.0  # seconds to wait for the pipes to close once the process has exited
EXIT_POLL = 0.05  # seconds between checks whether the process has exited

NPM_PACKAGES = {
    Provider.CLAUDE: "@anthropic-ai/claude-code",
    Provider.CODEX: "@openai/codex",
    Provider.GEMINI: "@google/gemini-cli",
}

# The CLIs that take the appended system prompt as a flag. It goes in a file (mode 0600),
# never in argv: other local users would read the memory in ``ps``, and a big one would
# not fit. Codex and Gemini read it from stdin after the prompt.
APPEND_FILE_PROVIDERS = frozenset({Provider.CLAUDE})


class CliNotFound(DuctorError):
    """The CLI of a provider is not installed where ductor looks for it."""

    def __init__(self, provider: Provider, detail: str, *, missing: bool = True) -> None:
        self.provider = provider
        command = spec_for(provider).executable
        problem = "is not installed" if missing else "cannot be started"
        super().__init__(
            f"{command} {problem}: npm install -g {NPM_PACKAGES[provider]}"
            f" ({detail}; or put its directory on the agent's PATH)"
        )


@dataclass(frozen=True)
class TimeoutStatus:
    """A timeout warning or extension, for the user to see."""

    notice: TimeoutNotice


RunEvent = Event | TimeoutStatus


@dataclass(frozen=True)
class RunSpec:
    provider: Provider
    request: TurnRequest
    cwd: Path
    env: Mapping[str, str]  # the parent environment to filter (os.environ normally)
    identity: ChildIdentity | None
    secrets: Mapping[str, str] = field(default_factory=dict)  # the agent's .env
    executable: str | None = None  # None: look the CLI up (see ductor.clipath)
    policy: TimeoutPolicy | None = None  # None: no timeout
    temp_dir: Path | None = None  # for the appended system prompt file; None: $TMPDIR


def resolve_executable(provider: Provider, env: Mapping[str, str]) -> str:
    """The path of the provider's CLI, found the way the units find it."""
    found = find_cli(provider.value, env)
    if found is None:
        raise CliNotFound(provider, f"not found in {unit_path(env)}")
    return str(found)


def child_path(executable: str, env: Mapping[str, str]) -> str:
    """PATH for the child: the units' PATH, with the CLI's own directory first when it is
    not on it (an nvm install keeps ``node`` next to the CLI's ``#!/usr/bin/env node``)."""
    path = unit_path(env)
    directory = str(Path(executable).absolute().parent) if "/" in executable else ""
    if directory and directory not in path.split(":"):
        path = f"{directory}:{path}"
    return path


def describe_argv(argv: list[str], request: TurnRequest, secrets: Mapping[str, str]) -> str:
    """argv for the log: prompts reduced to their size, secrets masked."""
    placeholders = {
        request.prompt: f"<prompt: {len(request.prompt)} chars>",
        request.append_system_prompt: f"<system prompt: {len(request.append_system_prompt)} chars>",
    }
    placeholders.pop("", None)
    shown = [placeholders.get(arg, arg) for arg in argv]
    # As ductor.log.register_secret does: masking "1" or "true" would garble the line.
    values = [value for value in secrets.values() if len(value) >= 6]
    return mask(shlex.join(shown), values)


class CliRun:
    """One running CLI process."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self._provider: ProviderSpec = spec_for(spec.provider)
        self._process: asyncio.subprocess.Process | None = None
        self._started = False
        self._started_at: float | None = None
        self._stopped_by: ErrorKind | None = None  # a stop() or a timeout
        self._interrupted = False  # interrupt() was sent
        self._stopping: asyncio.Future[None] | None = None
        self._stderr = bytearray()
        self._controller: TimeoutController | None = None

    # -- state ------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def pgid(self) -> int | None:
        """The child's process group: it leads its own, so this is its pid."""
        return self.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def started_at(self) -> float | None:
        """When the process started, in seconds since the epoch."""
        return self._started_at

    @property
    def time_allowed(self) -> float | None:
        """Seconds the run was allowed, extensions included (what a timeout message
        names); None without a timeout or before the run started."""
        return self._controller.total if self._controller is not None else None

    @property
    def stopped_by(self) -> ErrorKind | None:
        """What ended the run from our side: TIMEOUT, INTERRUPTED (interrupt() or stop()),
        or None when the process ended by itself (or was killed by someone else)."""
        if self._stopped_by is not None:
            return self._stopped_by
        return ErrorKind.INTERRUPTED if self._interrupted else None

    # -- control ----------------------------------------------------------------------

    def interrupt(self) -> bool:
        """SIGINT to the process group, like Ctrl-C; False when it is not running."""
        if not self.running:
            return False
        self._interrupted = True
        log.info("interrupting %s (pid %s)", self.spec.provider, self.pid)
        return self._signal_group(signal.SIGINT)

    async def stop(self, grace: float = 2.0) -> bool:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds; returns whether
        the process was running. Returns once the process has exited."""
        if not self.running:
            return False
        if self._stopped_by is None:
            self._stopped_by = ErrorKind.INTERRUPTED
        log.info("stopping %s (pid %s)", self.spec.provider, self.pid)
        await self._stop_group(grace)
        return True

    # -- the run ----------------------------------------------------------------------

    async def events(self) -> AsyncIterator[RunEvent]:
        """Start the process and yield its events until the closing Result.

        Raises CliNotFound when the CLI cannot be started. Leaving the loop early stops
        the process.
        """
        if self._started:
            raise RuntimeError("a CliRun runs once; make a new one for the next turn")
        self._started = True
        request, prompt_file = self._request_with_files()
        queue: asyncio.Queue[RunEvent | None] = asyncio.Queue()
        supervisor: asyncio.Task[None] | None = None
        try:
            stdin_text = await self._spawn(request)
            supervisor = asyncio.create_task(self._supervise(request, stdin_text, queue))
            while (item := await queue.get()) is not None:
                yield item
            await supervisor  # re-raise what went wrong in there, if anything
        finally:
            if supervisor is not None and not supervisor.done():
                supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await supervisor
            if self.running:  # the consumer left early
                await self.stop(STOP_GRACE)
            if prompt_file is not None:
                with contextlib.suppress(FileNotFoundError):
                    prompt_file.unlink()

    def _request_with_files(self) -> tuple[TurnRequest, Path | None]:
        """The request, with the appended system prompt moved into a file."""
        request = self.spec.request
        if (
            self.spec.provider not in APPEND_FILE_PROVIDERS
            or request.append_system_prompt_file is not None
            or not request.append_system_prompt
        ):
            return request, None
        fd, name = tempfile.mkstemp(  # mode 0600
            prefix="ductor_append_", suffix=".md", dir=self.spec.temp_dir
        )
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(request.append_system_prompt)
        path = Path(name)
        return dataclasses.replace(request, append_system_prompt_file=path), path

    async def _spawn(self, request: TurnRequest) -> str | None:
        """Start the process; returns the text for its stdin, if any."""
        spec = self.spec
        if not spec.cwd.is_dir():  # else the spawn's FileNotFoundError would blame the CLI
            raise DuctorError(f"{spec.cwd}: the working directory of the CLI does not exist")
        executable = spec.executable or resolve_executable(spec.provider, spec.env)
        argv = self._provider.build_argv(request, executable)
        stdin_text = self._provider.stdin_text(request)
        env = child_env(
            spec.env,
            identity=spec.identity,
            secrets=spec.secrets,
            provider_env=self._provider.provider_env(request, is_root=os.geteuid() == 0),
        )
        env["PATH"] = child_path(executable, spec.env)
        log.debug("running %s in %s", describe_argv(argv, request, spec.secrets), spec.cwd)
        try:
            self._process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE
                if stdin_text is not None
                else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=spec.cwd,
                env=env,
                start_new_session=True,
                limit=STDOUT_LINE_LIMIT,
            )
        except (FileNotFoundError, PermissionError) as exc:
            missing = isinstance(exc, FileNotFoundError)
            reason = "not found" if missing else "not executable"
            raise CliNotFound(spec.provider, f"{executable}: {reason}", missing=missing) from None
        self._started_at = time.time()
        log.debug("%s started, pid %s", spec.provider, self._process.pid)
        return stdin_text

    async def _supervise(
        self, request: TurnRequest, stdin_text: str | None, queue: asyncio.Queue[RunEvent | None]
    ) -> None:
        """Feed stdin, read the output, watch the clock, and close the turn when the
        process ends."""
        assert self._process is not None
        parser = self._provider.new_parser(request.model)
        controller = None
        if self.spec.policy is not None:
            controller = self._controller = TimeoutController(self.spec.policy)
            controller.start()
        tasks: list[asyncio.Task[None]] = []
        try:
            if stdin_text is not None:
                tasks.append(asyncio.create_task(self._feed_stdin(stdin_text)))
            reader = asyncio.create_task(self._read_stdout(parser, controller, queue))
            drainer = asyncio.create_task(self._read_stderr(parser, queue))
            tasks += [reader, drainer]
            if controller is not None:
                tasks.append(asyncio.create_task(self._watch(controller, parser, queue)))
            await self._exited()
            await self._close_pipes(reader, drainer)
            returncode = self._process.returncode
            assert returncode is not None
            stderr_text = self._stderr.decode("utf-8", errors="replace")
            log.debug("%s (pid %s) exited with %s", self.spec.provider, self.pid, returncode)
            for event in parser.finish(returncode, stderr_text, stopped_by=self.stopped_by):
                queue.put_nowait(event)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            queue.put_nowait(None)

    async def _feed_stdin(self, text: str) -> None:
        assert self._process is not None and self._process.stdin is not None
        stdin = self._process.stdin
        try:
            stdin.write(text.encode())
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            log.debug("%s exited before reading all of its stdin", self.spec.provider)
        finally:
            stdin.close()

    async def _read_stdout(
        self,
        parser: StreamParser,
        controller: TimeoutController | None,
        queue: asyncio.Queue[RunEvent | None],
    ) -> None:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        while True:
            try:
                line = await stdout.readline()
            except ValueError:  # longer than STDOUT_LINE_LIMIT; the reader dropped it
                log.warning(
                    "%s printed a line over %d bytes; skipped",
                    self.spec.provider,
                    STDOUT_LINE_LIMIT,
                )
                continue
            if not line:
                return
            if controller is not None:
                controller.activity()
            for event in parser.feed(line.decode("utf-8", errors="replace")):
                queue.put_nowait(event)

    async def _read_stderr(
        self, parser: StreamParser, queue: asyncio.Queue[RunEvent | None]
    ) -> None:
        """Keep the end of stderr for the error message, and show what the parser finds
        in it as it comes (Gemini prints its API retries only there)."""
        assert self._process is not None and self._process.stderr is not None
        stderr = self._process.stderr
        while True:
            try:
                line = await stderr.readline()
            except ValueError:  # longer than STDOUT_LINE_LIMIT; the reader dropped it
                continue
            if not line:
                return
            self._stderr += line
            del self._stderr[:-STDERR_KEEP]
            if parser.finished:
                continue
            for event in parser.feed_stderr(line.decode("utf-8", errors="replace")):
                queue.put_nowait(event)

    async def _watch(
        self,
        controller: TimeoutController,
        parser: StreamParser,
        queue: asyncio.Queue[RunEvent | None],
    ) -> None:
        while (wait := controller.next_check()) != math.inf:
            await asyncio.sleep(wait)
            for notice in controller.poll():
                if notice.kind is not NoticeKind.EXPIRED:
                    log.info("%s (pid %s): %s", self.spec.provider, self.pid, notice.text)
                    if not parser.finished:  # nothing may follow the Result
                        queue.put_nowait(TimeoutStatus(notice))
                    continue
                log.warning("%s (pid %s): %s", self.spec.provider, self.pid, notice.text)
                if self._stopped_by is None:
                    self._stopped_by = ErrorKind.TIMEOUT
                await self._stop_group(STOP_GRACE)
                return

    async def _exited(self) -> None:
        """Until the process has exited. ``Process.wait()`` would also wait for every
        descendant that inherited stdout to close it; the exit status is known before."""
        process = self._process
        assert process is not None
        # Usually the CLI exits and its pipes close together: wait() returns at once.
        # Polling covers the exit that descendants holding the pipes would hide.
        waiter = asyncio.ensure_future(process.wait())
        try:
            while process.returncode is None and not waiter.done():
                await asyncio.wait({waiter}, timeout=EXIT_POLL)
        finally:
            if not waiter.done():
                waiter.cancel()

    async def _close_pipes(self, reader: asyncio.Task[None], drainer: asyncio.Task[None]) -> None:
        """Read what is left in the pipes. A descendant that still holds them after the
        process has exited is killed with its group: the turn is over."""
        _, pending = await asyncio.wait({reader, drainer}, timeout=EXIT_DRAIN)
        if pending:
            log.warning(
                "descendants of %s (pid %s) kept its output open after it exited; killing them",
                self.spec.provider,
                self.pid,
            )
            self._signal_group(signal.SIGKILL)
            _, pending = await asyncio.wait(pending, timeout=EXIT_DRAIN)
            for task in pending:
                task.cancel()
        assert self._process is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._process.wait(), EXIT_DRAIN)

    async def _stop_group(self, grace: float) -> None:
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._terminate(grace))
        await asyncio.shield(self._stopping)

    async def _terminate(self, grace: float) -> None:
        self._signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(self._exited(), grace)
        except TimeoutError:
            log.warning(
                "%s (pid %s) ignored SIGTERM for %g s; killing its process group",
                self.spec.provider,
                self.pid,
                grace,
            )
        # Also when the leader obeyed: descendants that ignored SIGTERM must go too.
        self._signal_group(signal.SIGKILL)
        await self._exited()

    def _signal_group(self, signum: signal.Signals) -> bool:
        if self.pgid is None:
            return False
        try:
            os.killpg(self.pgid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True


class ProcessRegistry:
    """The running CLI processes of an agent, by session and role (``"main"``, a named
    session, a background job), so that ``/stop`` and ``/interrupt`` find them."""

    def __init__(self) -> None:
        self._runs: dict[Hashable, dict[str, CliRun]] = {}

    def add(self, key: Hashable, label: str, run: CliRun) -> None:
        self._runs.setdefault(key, {})[label] = run

    def remove(self, key: Hashable, label: str, run: CliRun | None = None) -> None:
        """Forget the run under (key, label); with ``run``, only if it is that one (a
        newer run may have taken the label since)."""
        runs = self._runs.get(key, {})
        current = runs.get(label)
        if current is None or (run is not None and current is not run):
            return
        del runs[label]
        if not runs:
            del self._runs[key]

    def for_session(self, key: Hashable) -> list[CliRun]:
        return list(self._runs.get(key, {}).values())

    def all(self) -> list[CliRun]:
        return [run for runs in self._runs.values() for run in runs.values()]

    def interrupt_session(self, key: Hashable) -> int:
        """SIGINT to every process of the session; the number signalled."""
        return sum(run.interrupt() for run in self.for_session(key))

    async def stop_session(self, key: Hashable) -> int:
        """Stop every process of the session; the number that were running."""
        return await _stop(self.for_session(key))

    async def stop_all(self) -> int:
        return await _stop(self.all())


async def _stop(runs: list[CliRun]) -> int:
    stopped = await asyncio.gather(*(run.stop() for run in runs))
    return sum(stopped)
