"""One maildir-style queue of envelopes (``outbox/<transport>/`` or ``inbox/``).

Each envelope is one file named by its id, and its state is the directory it is in::

    tmp/ --link--> new/ --claim--> cur/ --finish--> done/
                    ^               |  \\--fail (attempts left)--> new/ (next_attempt_at)
                    |               |   \\-fail (no attempts left)--> failed/
                    +--requeue------+-------------- failed/, done/, bad/
    malformed files, wherever they are found --> bad/ (with NAME.reason)

Every state change is one rename(2), so a crash leaves each envelope in exactly one
state; :meth:`Queue.recover` finishes what a crashed reader left in ``cur/``. Writers
(:meth:`Queue.put`) and readers (everything else) may be separate processes.
docs/spool.md describes the layout, the state machine and the guarantees.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from ductor.atomic import (
    fsync_directory,
    fsync_file,
    open_lock_file,
    remove_stale_temp_files,
    replace_file,
    write_temp_file,
)
from ductor.spool._crash import crash_point
from ductor.spool.envelope import (
    Delivery,
    Envelope,
    MessageId,
    now_utc,
    validate_envelope_id,
)
from ductor.spool.errors import (
    EnvelopeError,
    NotClaimedError,
    SpoolError,
    UnknownEnvelopeError,
)
from ductor.spool.files import REASON_SUFFIX, QueueDirectory, unreadable_reason
from ductor.spool.states import (
    DEFAULT_RETRY_POLICY,
    RESCAN_INTERVAL,
    STALE_TEMP_AFTER,
    Entry,
    Recovery,
    RetryPolicy,
    State,
)
from ductor.spool.wake import WakeListener, send_wake

logger = logging.getLogger("ductor.spool")

READER_LOCK_NAME = "reader.lock"

# Filesystems without hard links: fall back to rename (see Queue._link_new).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


class Queue(QueueDirectory):
    """One queue: writers put envelopes in, a reader claims and delivers them.

    Cheap to create; the directories are made on first use.
    """

    def __init__(self, path: Path, *, retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY) -> None:
        super().__init__(path)
        self.retry_policy = retry_policy
        self._lock_fd: int | None = None
        self._lock_held = False
        self._listener: WakeListener | None = None

    # -- writer side ------------------------------------------------------------------

    def put(self, envelope: Envelope) -> bool:
        """Queue ``envelope`` durably and wake the reader.

        Returns False, writing nothing, when an envelope with this id already exists in
        any state: a writer that is retried with the same id does not duplicate it.
        """
        self.ensure_directories()
        if self._locate(envelope.id) is not None:
            return False
        temp = write_temp_file(self.tmp_dir, envelope.to_json().encode(), name=envelope.id)
        crash_point("put:tmp-written")
        try:
            linked = self._link_new(temp, self.directory(State.NEW) / envelope.id)
            crash_point("put:linked")
        finally:
            temp.unlink(missing_ok=True)
        if not linked:
            return False
        fsync_directory(self.directory(State.NEW))
        send_wake(self.wake_socket)
        return True

    def _link_new(self, temp: Path, target: Path) -> bool:
        # link(2) fails when the target exists, so two writers of one id cannot both win.
        try:
            target.hardlink_to(temp)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            if target.exists():
                return False
            temp.rename(target)
        return True

    # -- reader side ------------------------------------------------------------------

    def claim(self, envelope_id: str, *, now: datetime | None = None) -> Envelope | None:
        """Take ``new/ID`` for delivery, or None if it is gone, claimed, bad or not due."""
        validate_envelope_id(envelope_id)
        self.ensure_directories()
        self._hold_reader_lock()
        now = now or now_utc()
        waiting = self.directory(State.NEW) / envelope_id
        envelope = self._load(waiting)
        if envelope is None or not envelope.is_due(now):
            return None
        claimed = self.directory(State.CUR) / envelope_id
        try:
            waiting.rename(claimed)  # the one atomic step that decides who delivers
        except FileNotFoundError:
            return None
        crash_point("claim:moved")
        # Re-read what we own now: another reader may have retried it in between.
        envelope = self._load(claimed)
        if envelope is not None and not envelope.is_due(now):
            claimed.rename(waiting)
            return None
        return envelope

    def claim_next(self, *, now: datetime | None = None) -> Envelope | None:
        """Claim the oldest due envelope in ``new/``, or None when none is due."""
        self.ensure_directories()
        now = now or now_utc()
        for name in self._names(State.NEW):
            try:
                validate_envelope_id(name)
            except EnvelopeError:
                self._move_aside(self.directory(State.NEW) / name, "file name is not an id")
                continue
            envelope = self.claim(name, now=now)
            if envelope is not None:
                return envelope
        return None

    def record_delivery(
        self,
        envelope: Envelope,
        message_ids: Iterable[MessageId],
        *,
        fallback_reason: str | None = None,
        now: datetime | None = None,
    ) -> Envelope:
        """Write down that a claimed envelope reached the messenger, before :meth:`finish`.

        Once this returns, a crash can no longer cause the envelope to be delivered
        again: :meth:`recover` sends a recorded envelope to ``done/``. Call it once, after
        the last message of the envelope went out.
        """
        delivery = envelope.delivery
        updated = replace(
            envelope,
            delivery=replace(
                delivery,
                attempts=delivery.attempts + (0 if delivery.delivered else 1),
                next_attempt_at=None,
                delivered_at=now or now_utc(),
                message_ids=tuple(message_ids),
                fallback_used=fallback_reason is not None,
                fallback_reason=fallback_reason,
            ),
        )
        claimed = self._claimed_path(updated)
        # The message is out: make the record survive a killed process first (rename
        # without fsync, microseconds), then a power cut (fsync). A power cut that keeps
        # the rename but not the data leaves a broken file that recover() moves to bad/;
        # it was delivered, so nothing is lost and nothing is sent twice.
        temp = write_temp_file(
            self.tmp_dir, updated.to_json().encode(), name=updated.id, sync=False
        )
        crash_point("record:tmp-written")
        temp.replace(claimed)
        crash_point("record:replaced")
        fsync_file(claimed)
        fsync_directory(claimed.parent)
        # On filesystems that do not order renames, this makes the claim durable too.
        fsync_directory(self.directory(State.NEW))
        return updated

    def finish(self, envelope: Envelope) -> None:
        """Move a claimed envelope to ``done/``.

        Not fsynced on purpose: if a power cut undoes this rename, the envelope is back
        in ``cur/`` and :meth:`recover` finishes it again (recorded) or redelivers it.
        """
        done = self.directory(State.DONE) / envelope.id
        try:
            (self.directory(State.CUR) / envelope.id).rename(done)
        except FileNotFoundError:
            raise NotClaimedError(f"{self.path}: envelope {envelope.id} is not in cur/") from None
        crash_point("finish:moved")
        os.utime(done)  # prune_done counts retention from now

    def fail(
        self,
        envelope: Envelope,
        error: str,
        *,
        policy: RetryPolicy | None = None,
        permanent: bool = False,
        now: datetime | None = None,
    ) -> Entry:
        """Record a failed delivery attempt of a claimed envelope.

        The envelope goes back to ``new/`` due after a backoff, or to ``failed/`` when
        this was the last attempt of ``policy`` or the failure is ``permanent``.
        """
        policy = policy or self.retry_policy
        now = now or now_utc()
        attempts = envelope.delivery.attempts + 1
        give_up = permanent or attempts >= policy.max_attempts
        next_attempt_at = None if give_up else now + timedelta(seconds=policy.delay(attempts))
        updated = replace(
            envelope,
            delivery=replace(
                envelope.delivery,
                attempts=attempts,
                next_attempt_at=next_attempt_at,
                last_error=error,
            ),
        )
        self._rewrite_claimed(updated, "fail")
        state = State.FAILED if give_up else State.NEW
        target = self.directory(state) / envelope.id
        (self.directory(State.CUR) / envelope.id).rename(target)
        fsync_directory(target.parent)
        if give_up:
            logger.warning(
                "%s: gave up delivering %s after %d attempt(s): %s",
                self.path,
                envelope.id,
                attempts,
                error,
            )
        return Entry(envelope.id, state, target, updated)

    def reject(self, envelope: Envelope, reason: str) -> Entry:
        """Move a claimed envelope that must not be delivered as it is (its chat is not
        allowed) to ``bad/`` with ``reason``; ``ductor outbox resend`` can retry it once
        the cause is fixed."""
        claimed = self._claimed_path(envelope)
        target = self._move_aside(claimed, reason)
        return Entry(envelope.id, State.BAD, target, envelope, reason)

    def recover(
        self, *, stale_temp_after: float = STALE_TEMP_AFTER, now: datetime | None = None
    ) -> Recovery:
        """Clean up after crashed readers and writers; call once when a reader starts.

        Envelopes left in ``cur/`` go back to ``new/``, except those whose delivery was
        recorded: they go to ``done/`` so the user does not get them twice. This only
        happens while no other reader holds the queue (their claims are in ``cur/``
        too); readers hold the queue from their first claim until :meth:`close`.
        """
        self.ensure_directories()
        now = now or now_utc()
        removed = remove_stale_temp_files(
            self.tmp_dir, stale_temp_after, now=now.timestamp(), all_files=True
        )
        if not self._lock_exclusively():
            return Recovery(removed_temp_files=len(removed), other_reader_active=True)
        returned: list[str] = []
        completed: list[str] = []
        moved_aside: list[str] = []
        try:
            for name in self._names(State.CUR):
                claimed = self.directory(State.CUR) / name
                try:
                    envelope = self._read(claimed)
                except FileNotFoundError:
                    continue
                except (OSError, ValueError, EnvelopeError) as exc:
                    self._move_aside(claimed, unreadable_reason(exc))
                    moved_aside.append(name)
                    continue
                if envelope.delivery.delivered:
                    claimed.rename(self.directory(State.DONE) / name)
                    completed.append(name)
                else:
                    claimed.rename(self.directory(State.NEW) / name)
                    returned.append(name)
                crash_point("recover:moved")
            if returned:
                fsync_directory(self.directory(State.NEW))
            if completed:
                fsync_directory(self.directory(State.DONE))
        finally:
            self._hold_reader_lock(downgrade=True)
        if returned or completed or moved_aside:
            logger.info(
                "%s: recovered after a crash: %d back to new/, %d already delivered, %d bad",
                self.path,
                len(returned),
                len(completed),
                len(moved_aside),
            )
        return Recovery(tuple(returned), tuple(completed), tuple(moved_aside), len(removed), False)

    def next_wait(self, *, now: datetime | None = None, max_wait: float = RESCAN_INTERVAL) -> float:
        """Seconds until something in ``new/`` is due (0: now), at most ``max_wait``."""
        now = now or now_utc()
        wait = max_wait
        for name in self._names(State.NEW):
            try:
                envelope = self._read(self.directory(State.NEW) / name)
            except (OSError, SpoolError):
                continue  # claim_next moves bad files aside; do not spin on them
            due = envelope.delivery.next_attempt_at
            if due is None or due <= now:
                return 0.0
            wait = min(wait, (due - now).total_seconds())
        return max(wait, 0.0)

    def listen(self) -> WakeListener:
        """Bind ``wake.sock``; bind before the first scan so that no wake-up is missed."""
        if self._listener is None:
            self.ensure_directories()
            self._listener = WakeListener(self.wake_socket)
        return self._listener

    def wait(self, timeout: float | None) -> bool:
        """Block until a writer wakes the reader (True) or ``timeout`` passes (False)."""
        if self._listener is None:
            time.sleep(RESCAN_INTERVAL if timeout is None else timeout)
            return False
        return self._listener.wait(timeout)

    async def wait_async(self, timeout: float | None) -> bool:
        import asyncio

        if self._listener is None:
            await asyncio.sleep(RESCAN_INTERVAL if timeout is None else timeout)
            return False
        return await self._listener.wait_async(timeout)

    def close(self) -> None:
        """Stop listening and let go of the queue (other readers may recover it)."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
            self._lock_held = False

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- administration (`ductor outbox resend`) ---------------------------------------

    def requeue(self, envelope_id: str) -> Envelope:
        """Deliver a failed, done or (repaired) bad envelope again, without re-running it.

        The delivery state starts over (attempts, recorded message ids); the execution
        state and the last delivery error are kept.
        """
        validate_envelope_id(envelope_id)
        self.ensure_directories()
        state = self._locate(envelope_id)
        if state is None:
            raise UnknownEnvelopeError(f"{self.path}: no envelope {envelope_id}")
        if state not in (State.FAILED, State.DONE, State.BAD):
            raise SpoolError(f"{self.path}: envelope {envelope_id} is already queued ({state})")
        source = self.directory(state) / envelope_id
        envelope = self._read(source)
        updated = replace(
            envelope,
            delivery=Delivery(
                last_error=envelope.delivery.last_error,
                requeues=envelope.delivery.requeues + 1,
            ),
        )
        temp = write_temp_file(self.tmp_dir, updated.to_json().encode(), name=envelope_id)
        replace_file(temp, source)
        crash_point("requeue:reset")
        source.rename(self.directory(State.NEW) / envelope_id)
        fsync_directory(self.directory(State.NEW))
        if state is State.BAD:
            (self.directory(State.BAD) / f"{envelope_id}{REASON_SUFFIX}").unlink(missing_ok=True)
        send_wake(self.wake_socket)
        return updated

    # -- internals --------------------------------------------------------------------

    def _claimed_path(self, envelope: Envelope) -> Path:
        claimed = self.directory(State.CUR) / envelope.id
        if not claimed.exists():
            raise NotClaimedError(f"{self.path}: envelope {envelope.id} is not in cur/")
        return claimed

    def _rewrite_claimed(self, envelope: Envelope, step: str) -> None:
        claimed = self._claimed_path(envelope)
        temp = write_temp_file(self.tmp_dir, envelope.to_json().encode(), name=envelope.id)
        crash_point(f"{step}:tmp-written")
        replace_file(temp, claimed)
        crash_point(f"{step}:replaced")

    def _open_lock(self) -> int:
        if self._lock_fd is None:
            self._lock_fd = open_lock_file(self.path / READER_LOCK_NAME)
        return self._lock_fd

    def _hold_reader_lock(self, *, downgrade: bool = False) -> None:
        # Every reader holds a shared flock while it may have envelopes in cur/.
        if self._lock_held and not downgrade:
            return
        fcntl.flock(self._open_lock(), fcntl.LOCK_SH)
        self._lock_held = True

    def _lock_exclusively(self) -> bool:
        """True when no other reader holds the queue (so cur/ holds only orphans)."""
        if self._lock_held:
            raise SpoolError(f"{self.path}: recover() must run before the first claim")
        try:
            fcntl.flock(self._open_lock(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._hold_reader_lock()
            return False
        return True
