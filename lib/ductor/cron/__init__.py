"""Scheduled jobs of an agent: the job file (``jobs``) and the timers that run them
(``sync``). Stdlib and tomlkit only: the cron oneshot and the tool scripts import this."""
