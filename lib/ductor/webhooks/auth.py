"""Who may call a hook: a bearer token or an HMAC signature of the body.

Every comparison is constant-time (``hmac.compare_digest``) so the answer's timing says
nothing about how much of a guess was right. The HMAC header, algorithm, encoding and
prefix are the hook's, so GitHub's ``X-Hub-Signature-256: sha256=<hex>`` works as sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from ductor.webhooks.store import AuthMode, Hook


def signature(hook: Hook, body: bytes) -> str:
    """The signature of ``body`` as the hook expects it in its header (prefix included)."""
    digest = hmac.new(hook.hmac_secret.encode(), body, getattr(hashlib, hook.hmac_algorithm))
    raw = digest.digest()
    encoded = base64.b64encode(raw).decode() if hook.hmac_encoding == "base64" else raw.hex()
    return hook.hmac_prefix + encoded


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), "")


def authorized(
    hook: Hook, headers: Mapping[str, str], body: bytes, *, shared_token: str = ""
) -> bool:
    """Whether the request carries the hook's credentials.

    Bearer hooks also take the agent's ``webhook-token`` secret (``shared_token``), when
    it is set, like the original's global token.
    """
    if hook.auth == AuthMode.HMAC:
        if not hook.hmac_secret:
            return False
        given = _header(headers, hook.hmac_header).strip()
        expected = signature(hook, body)
        if hook.hmac_encoding == "hex":
            given, expected = given.lower(), expected.lower()
        return hmac.compare_digest(given.encode(), expected.encode())
    scheme, _, token = _header(headers, "Authorization").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    offered = token.strip().encode()
    ok = bool(hook.token) and hmac.compare_digest(offered, hook.token.encode())
    shared = bool(shared_token) and hmac.compare_digest(offered, shared_token.encode())
    return ok or shared


def credentials(hook: Hook, body: bytes) -> dict[str, str]:
    """The headers that authorize ``body`` for ``hook`` (for ``ductor webhook test``)."""
    if hook.auth == AuthMode.HMAC:
        return {hook.hmac_header: signature(hook, body)}
    return {"Authorization": f"Bearer {hook.token}"}
