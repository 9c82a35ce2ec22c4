"""The ``ductor`` command."""
