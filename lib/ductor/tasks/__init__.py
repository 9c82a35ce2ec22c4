"""Background tasks: work an agent hands to itself, each run a ``ductor-task@AGENT:ID``
unit (see docs/tasks.md).

- :mod:`ductor.tasks.store`: the task records (``STATE/AGENT/tasks/ID.json``) and the
  task folders in the workspace (``workspace/tasks/ID/`` with ``TASKMEMORY.md``);
- :mod:`ductor.tasks.texts`: the prompts, notices and the envelope a result travels in;
- :mod:`ductor.tasks.launch`: starting and stopping runs (systemd, or a plain process
  when the agent runs in the foreground);
- :mod:`ductor.tasks.runner`: ``ductor-task``, the oneshot that runs one task;
- :mod:`ductor.tasks.hub`: the agent's side (create, list, cancel, resume, ask).

Stdlib only below the runner, so the tool scripts' requests are cheap to serve.
"""
