"""The original's ``webhooks.json`` → this product's ``webhooks.toml`` (0600).

Each hook keeps its id, mode, prompt template, task folder, title, description and its
secrets (bearer token, or HMAC secret, header, algorithm, encoding and prefix), so the
services that call it need no change. The global ``webhooks.token`` became the agent's
``webhook-token`` secret, which bearer hooks still accept. What this product's hooks
cannot do is reported: a hook that signs with a regular expression over the header or
a payload prefix (Stripe/Slack style) comes across disabled, because its signatures
would be refused; per-hook CLI parameters, quiet hours and dependencies are dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ductor.config.schema import PROVIDERS, REASONING_EFFORTS
from ductor.errors import UsageError
from ductor.migrate.state_map import Dropped, job_name
from ductor.webhooks.store import Hook, validate


def _text(raw: Mapping[str, Any], key: str, default: str = "") -> str:
    value = raw.get(key)
    return value if isinstance(value, str) else default


def map_webhooks(original: Mapping[str, Any]) -> tuple[dict[str, Hook], Dropped]:
    hooks: dict[str, Hook] = {}
    dropped: Dropped = []
    raw_hooks = original.get("hooks")
    for index, raw in enumerate(raw_hooks if isinstance(raw_hooks, list) else []):
        if not isinstance(raw, dict) or not _text(raw, "id"):
            dropped.append((f"webhooks.json hook {index}", "no id"))
            continue
        where = f"webhook {raw['id']}"
        try:
            hook, notes = _hook(raw)
        except UsageError as exc:
            dropped.append((where, f"not migrated: {exc}"))
            continue
        if hook.id in hooks:
            dropped.append((where, f"its id {hook.id!r} is taken by another hook"))
            continue
        hooks[hook.id] = hook
        dropped.extend((f"{where} {what}", why) for what, why in notes)
    return hooks, dropped


def _hook(raw: Mapping[str, Any]) -> tuple[Hook, Dropped]:
    notes: Dropped = []
    enabled = raw.get("enabled", True) is not False
    for key in ("hmac_sig_regex", "hmac_payload_prefix_regex"):
        if _text(raw, key) and _text(raw, "auth_mode") == "hmac":
            notes.append((key, "not supported: the hook comes across disabled"))
            enabled = False
    for key in ("cli_parameters", "quiet_start", "quiet_end", "dependency"):
        if raw.get(key) not in (None, "", []):
            notes.append((key, "not supported for webhooks here"))
    provider, model = _text(raw, "provider"), _text(raw, "model")
    if provider and provider not in PROVIDERS:
        notes.append(("provider", f"{provider} is not supported: the agent's default runs it"))
        provider = model = ""
    effort = _text(raw, "reasoning_effort")
    if effort and effort not in REASONING_EFFORTS:
        notes.append(("reasoning_effort", f"{effort!r} is not known"))
        effort = ""
    folder = _text(raw, "task_folder")
    hook = Hook(
        id=job_name(_text(raw, "id")),
        prompt_template=_text(raw, "prompt_template"),
        mode=_text(raw, "mode", "wake"),
        title=_text(raw, "title"),
        description=_text(raw, "description"),
        enabled=enabled,
        task_folder=job_name(folder) if folder else "",
        auth=_text(raw, "auth_mode", "bearer"),
        token=_text(raw, "token"),
        hmac_secret=_text(raw, "hmac_secret"),
        hmac_header=_text(raw, "hmac_header") or "X-Hub-Signature-256",
        hmac_algorithm=_text(raw, "hmac_algorithm", "sha256"),
        hmac_encoding=_text(raw, "hmac_encoding", "hex"),
        hmac_prefix=_text(raw, "hmac_sig_prefix"),
        provider=provider,
        model=model,
        effort=effort,
        created_at=_text(raw, "created_at"),
    )
    return dataclasses.replace(validate(hook), updated_at=hook.created_at), notes


def renamed_folders(original: Mapping[str, Any], hooks: Mapping[str, Hook]) -> dict[str, str]:
    """Task folders whose name changed (original folder → the hook's folder here)."""
    renamed: dict[str, str] = {}
    for raw in original.get("hooks") or []:
        if isinstance(raw, dict) and _text(raw, "task_folder"):
            folder = _text(raw, "task_folder")
            if job_name(folder) != folder and job_name(_text(raw, "id")) in hooks:
                renamed[folder] = job_name(folder)
    return renamed
