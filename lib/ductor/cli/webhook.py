"""``ductor webhook``: an agent's webhooks (add, list, show, edit, remove, rotate-token,
test). See docs/webhooks.md.

Where a hook answers: ``--chat``/``--topic``/``--transport``; without ``--chat``, ``add``
takes ``DUCTOR_CHAT_ID``, ``DUCTOR_TOPIC_ID`` and ``DUCTOR_TRANSPORT`` from the
environment, which the agent sets for its CLI, so a hook created from a chat (through the
workspace's webhook tool scripts) answers in that chat. Without either: the agent's main
user.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from typing import Any

from ductor import agents
from ductor.cli.args import RecordActions, add_enable_switch
from ductor.cli.context import Context, table
from ductor.errors import UsageError
from ductor.webhooks.status import last_call_line
from ductor.webhooks.store import AuthMode, Hook, HookStore, Mode

SAMPLE_PAYLOAD = {"event": "test", "message": "a test call from `ductor webhook test`"}


def _options(parser: argparse.ArgumentParser, *, editing: bool) -> None:
    parser.add_argument(
        "--prompt", required=not editing, help="prompt template; {{field}} / {{a.b}} from the JSON"
    )
    parser.add_argument("--mode", choices=[m.value for m in Mode], help="default: wake")
    parser.add_argument("--title")
    parser.add_argument("--description")
    parser.add_argument("--task-folder", help="cron_task: folder under cron_tasks/ (default: ID)")
    parser.add_argument("--auth", choices=[a.value for a in AuthMode], help="default: bearer")
    parser.add_argument("--hmac-secret", help="default: a new random secret")
    parser.add_argument("--hmac-header", help="default: X-Hub-Signature-256 (GitHub)")
    parser.add_argument("--hmac-algorithm", choices=["sha256", "sha1", "sha512"])
    parser.add_argument("--hmac-encoding", choices=["hex", "base64"])
    parser.add_argument("--hmac-prefix", help="stripped from the header value (default: sha256=)")
    parser.add_argument("--provider", help="cron_task: claude, codex or gemini")
    parser.add_argument("--model", help="cron_task: model of the run")
    parser.add_argument("--effort", help="cron_task: reasoning effort")
    parser.add_argument("--quiet", metavar="START-END", help="cron_task: hours it is skipped in")
    parser.add_argument("--dependency", help="cron_task: runs with the same key never overlap")
    parser.add_argument("--chat", metavar="ID", help="chat that gets the answers")
    parser.add_argument("--topic", metavar="ID", help="topic (thread) in that chat")
    parser.add_argument("--transport", help="tg or mx (default: the agent's first)")


_OPTION_FIELDS = {
    "prompt": "prompt_template",
    "mode": "mode",
    "title": "title",
    "description": "description",
    "task_folder": "task_folder",
    "auth": "auth",
    "hmac_secret": "hmac_secret",
    "hmac_header": "hmac_header",
    "hmac_algorithm": "hmac_algorithm",
    "hmac_encoding": "hmac_encoding",
    "hmac_prefix": "hmac_prefix",
    "provider": "provider",
    "model": "model",
    "effort": "effort",
    "dependency": "dependency",
    "transport": "transport",
}


def _fields(args: argparse.Namespace, env: Mapping[str, str] | None) -> dict[str, Any]:
    values = {
        field: getattr(args, option)
        for option, field in _OPTION_FIELDS.items()
        if getattr(args, option) is not None
    }
    if args.chat is not None:
        values.update(chat_id=args.chat, topic_id=args.topic or "")
    elif env is not None and env.get("DUCTOR_CHAT_ID"):
        values.update(chat_id=env["DUCTOR_CHAT_ID"], topic_id=env.get("DUCTOR_TOPIC_ID", ""))
        values.setdefault("transport", env.get("DUCTOR_TRANSPORT", ""))
    elif args.topic is not None:
        values["topic_id"] = args.topic
    if args.quiet is not None:
        from ductor.cli.cron import parse_quiet

        values["quiet_start"], values["quiet_end"] = parse_quiet(args.quiet)
    if getattr(args, "enabled", None) is not None:
        values["enabled"] = args.enabled
    return values


def _store(ctx: Context, agent: str) -> HookStore:
    return HookStore(ctx.paths.agent_state(agent))


def endpoint(ctx: Context, agent: str, hook_id: str) -> str:
    """The URL of the hook on this machine (or where the Unix socket is)."""
    from ductor.config import load_agent_config

    webhooks = load_agent_config(ctx.paths, agent).webhooks
    listen = webhooks.listen or f"{webhooks.host}:{webhooks.port}"
    if listen.startswith("/"):
        return f"http+unix://{listen}/hooks/{hook_id}"
    return f"http://{listen}/hooks/{hook_id}"


def _describe(ctx: Context, agent: str, hook: Hook, *, secret: bool) -> dict[str, Any]:
    data = hook.to_dict() if secret else hook.public()
    data["agent"] = agent
    data["url"] = endpoint(ctx, agent, hook.id)
    data["last_call"] = _store(ctx, agent).last_call(hook.id)
    return data


def _print_hook(ctx: Context, agent: str, verb: str, hook: Hook, *, secret: bool) -> None:
    if ctx.json:
        ctx.dump(_describe(ctx, agent, hook, secret=secret))
        return
    state = "" if hook.enabled else " (disabled)"
    ctx.print(f"{verb} webhook {hook.id} of {agent}{state}: {hook.mode}, {route(hook)}")
    ctx.print(f"  POST {endpoint(ctx, agent, hook.id)}  (Content-Type: application/json)")
    if hook.auth == AuthMode.HMAC:
        ctx.print(
            f"  auth: HMAC-{hook.hmac_algorithm.upper()} ({hook.hmac_encoding}) of the body in"
            f" {hook.hmac_header}: {hook.hmac_prefix}<signature>"
        )
    else:
        ctx.print("  auth: Authorization: Bearer <token>")
    if secret:
        label = "secret" if hook.auth == AuthMode.HMAC else "token"
        ctx.print(f"  {label}: {hook.secret}")
    last = _store(ctx, agent).last_call(hook.id)
    if last:
        ctx.print(f"  last call: {last_call_line(last)}")


def route(hook: Hook) -> str:
    if not hook.chat_id:
        return "answers the main user"
    where = f"answers chat {hook.chat_id}" + (f" topic {hook.topic_id}" if hook.topic_id else "")
    return where + (f" ({hook.transport})" if hook.transport else "")


def run_add(ctx: Context, args: argparse.Namespace) -> int:
    agent = agents.require(ctx.paths, args.agent)
    values = _fields(args, os.environ)
    hook = _store(ctx, agent).add(Hook(id=args.hook, **values))
    if hook.mode == Mode.CRON_TASK:
        from ductor.cron.jobs import task_folder
        from ductor.webhooks.runner import as_job

        job = as_job(hook, hook.prompt_template)
        task_folder(ctx.paths.workspace(agent), job.name, job)
    _print_hook(ctx, agent, "added", hook, secret=True)
    _remind_enabled(ctx, agent)
    return 0


def _remind_enabled(ctx: Context, agent: str) -> None:
    from ductor.config import load_agent_config

    if not ctx.json and not load_agent_config(ctx.paths, agent).webhooks.enabled:
        ctx.print(
            f"note: [webhooks] enabled = false for {agent}: set it to true in"
            f" {ctx.paths.agent_config(agent)} and run `ductor agent sync {agent}`"
        )


def run_edit(ctx: Context, args: argparse.Namespace) -> int:
    agent = agents.require(ctx.paths, args.agent)
    values = _fields(args, None)
    if not values:
        raise UsageError("nothing to change: give at least one option (see --help)")
    hook = _store(ctx, agent).update(args.hook, **values)
    _print_hook(ctx, agent, "changed", hook, secret=False)
    return 0


def run_show(ctx: Context, args: argparse.Namespace) -> int:
    agent = agents.require(ctx.paths, args.agent)
    hook = _store(ctx, agent).get(args.hook)
    _print_hook(ctx, agent, "", hook, secret=args.secret)
    return 0


def run_list(ctx: Context, args: argparse.Namespace) -> int:
    agent = agents.require(ctx.paths, args.agent)
    store = _store(ctx, agent)
    hooks = store.load()
    if ctx.json:
        ctx.dump([_describe(ctx, agent, hooks[h], secret=False) for h in sorted(hooks)])
        return 0
    if not hooks:
        ctx.print(f"{agent} has no webhooks (add one with `ductor webhook add {agent} ID ...`)")
        return 0
    rows = [
        [
            hook.id,
            hook.mode,
            hook.auth,
            "yes" if hook.enabled else "no",
            last_call_line(store.last_call(hook.id)),
        ]
        for hook in (hooks[h] for h in sorted(hooks))
    ]
    ctx.print(table(rows, ["id", "mode", "auth", "enabled", "last call"]))
    return 0


def run_remove(ctx: Context, args: argparse.Namespace) -> int:
    agent = agents.require(ctx.paths, args.agent)
    hook = _store(ctx, agent).remove(args.hook)
    if ctx.json:
        ctx.dump({"removed": hook.id, "agent": agent})
    else:
        ctx.print(f"removed webhook {hook.id} of {agent}")
    return 0


def run_rotate(ctx: Context, args: argparse.Namespace) -> int:
    agent = agents.require(ctx.paths, args.agent)
    hook = _store(ctx, agent).rotate(args.hook)
    _print_hook(ctx, agent, "new secret for", hook, secret=True)
    return 0


def run_test(ctx: Context, args: argparse.Namespace) -> int:
    """Send a signed sample request to the hook, as its caller would."""
    import requests

    from ductor.webhooks.auth import credentials

    agent = agents.require(ctx.paths, args.agent)
    hook = _store(ctx, agent).get(args.hook)
    try:
        payload = json.loads(args.payload) if args.payload else SAMPLE_PAYLOAD
    except ValueError as exc:
        raise UsageError(f"--payload is not JSON: {exc}") from None
    body = json.dumps(payload).encode()
    url = args.url or endpoint(ctx, agent, hook.id)
    if url.startswith("http+unix:"):
        raise UsageError(
            "the webhook socket is a Unix socket: give the URL of your proxy with --url"
        )
    headers = {"Content-Type": "application/json", **credentials(hook, body)}
    try:
        response = requests.post(url, data=body, headers=headers, timeout=args.timeout)
    except requests.RequestException as exc:
        raise UsageError(
            f"could not reach {url}: {type(exc).__name__} (is ductor-webhook@{agent}.socket"
            " listening? `ductor status`)"
        ) from None
    if ctx.json:
        ctx.dump({"url": url, "status": response.status_code, "answer": response.text.strip()})
    else:
        ctx.print(f"POST {url} → {response.status_code} {response.text.strip()}")
    return 0 if response.status_code == 202 else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``ductor webhook`` and its actions."""
    p = sub.add_parser(
        "webhook",
        help="HTTP endpoints that wake the agent or run a task",
        description="Webhooks: POST /hooks/ID with a token or signature; the JSON fills the"
        " hook's prompt, which wakes the chat's session or runs a task. See docs/webhooks.md.",
    )
    action = RecordActions(p, "webhook_command", record="hook", metavar="HOOK").add
    q = action("add", "create a webhook; prints its URL and secret", run_add)
    _options(q, editing=False)
    q = action("edit", "change a webhook (options not given stay as they are)", run_edit)
    _options(q, editing=True)
    add_enable_switch(q)
    action("list", "the agent's webhooks and their last call", run_list, of_record=False)
    q = action("show", "one webhook, its URL and its last call", run_show)
    q.add_argument("--secret", action="store_true", help="also print its token or secret")
    action("remove", "delete a webhook", run_remove)
    action("rotate-token", "give a webhook a new token or secret", run_rotate)
    q = action("test", "send a signed sample request to a webhook", run_test)
    q.add_argument("--payload", help="JSON body (default: a small sample)")
    q.add_argument("--url", help="where to send it (default: the agent's [webhooks] listen)")
    q.add_argument("--timeout", type=float, default=10.0, help="seconds")
