"""The original's webhooks.json → this product's webhooks.toml."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from ductor.migrate.webhooks_map import map_webhooks, renamed_folders
from ductor.webhooks.auth import authorized

FIXTURE = Path(__file__).parents[1] / "fixtures" / "original-home" / "ductor-home"


def test_a_github_hook_made_by_the_original_accepts_githubs_signature_as_before() -> None:
    original = json.loads((FIXTURE / "webhooks.json").read_text())
    hooks, dropped = map_webhooks(original)
    hook = hooks["github-push"]
    body = b'{"repository": "ductor", "pusher": "ada"}'
    digest = hmac.new(b"FAKE-fixture-hmac-secret", body, hashlib.sha256).hexdigest()
    assert authorized(hook, {"X-Hub-Signature-256": f"sha256={digest}"}, body)
    assert not authorized(hook, {"X-Hub-Signature-256": "sha256=00"}, body)
    assert dropped == []


def test_bearer_hooks_keep_their_token_and_unsupported_parts_are_reported() -> None:
    original = {
        "hooks": [
            {"id": "deploy", "mode": "cron_task", "task_folder": "Deploy Job",
             "prompt_template": "Deploy {{ref}}", "auth_mode": "bearer", "token": "tok-1",
             "provider": "grok", "quiet_start": 22, "quiet_end": 6, "cli_parameters": ["-x"]},
            {"id": "stripe", "prompt_template": "Paid: {{id}}", "auth_mode": "hmac",
             "hmac_secret": "whsec", "hmac_header": "Stripe-Signature",
             "hmac_payload_prefix_regex": "t=(\\\\d+)"},
            {"id": "broken", "prompt_template": "", "auth_mode": "bearer"},
        ]
    }  # fmt: skip
    hooks, dropped = map_webhooks(original)
    deploy = hooks["deploy"]
    assert (deploy.mode, deploy.token, deploy.provider, deploy.task_folder) == (
        "cron_task",
        "tok-1",
        "",
        "deploy-job",
    )
    assert authorized(deploy, {"Authorization": "Bearer tok-1"}, b"{}")
    assert not hooks["stripe"].enabled
    reasons = dict(dropped)
    assert "disabled" in reasons["webhook stripe hmac_payload_prefix_regex"]
    assert "grok is not supported" in reasons["webhook deploy provider"]
    assert "not supported" in reasons["webhook deploy quiet_start"]
    assert "prompt_template" in reasons["webhook broken"]
    assert renamed_folders(original, hooks) == {"Deploy Job": "deploy-job"}
