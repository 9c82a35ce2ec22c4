"""The Matrix transport (``ductor-matrix@NAME``), see docs/matrix.md.

:mod:`~ductor.transports.matrix.ingress`, :mod:`~ductor.transports.matrix.state` and
:mod:`~ductor.transports.matrix.segments` are stdlib only (no matrix-nio), so they can be
tested without a homeserver.
"""
