"""Webhooks: outside systems trigger an agent over HTTP (docs/webhooks.md).

``store`` keeps the hooks (``STATE/AGENT/webhooks.toml``) and their last calls,
``auth`` checks bearer tokens and HMAC signatures, ``render`` fills a hook's prompt
template, ``server`` answers HTTP on the socket systemd passes, ``dispatch`` turns an
accepted request into durable work and ``runner`` runs ``cron_task`` hooks.
Stdlib and tomlkit only: the service starts fast and stays small.
"""
