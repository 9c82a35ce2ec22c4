"""ductor: AI coding CLIs driven from chat, as systemd units."""

__version__ = "0.1.0"
