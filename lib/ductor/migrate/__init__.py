"""``ductor migrate``: bring a ``~/.ductor`` of the original ductor (0.20) across.

One module per concern: ``source`` reads the original's home (never writing to it),
``config_map`` turns its ``config.json`` into commented TOML and secrets, ``state_map``
its sessions, chat records and cron jobs, ``cli_sessions`` carries the CLIs' own session
files to the new workspace, ``files`` chooses the workspace files to copy, ``plan``
gathers all of it into a plan that is printed (``--dry-run``) or carried out, and
``command`` is the subcommand. See docs/migrate.md.
"""
