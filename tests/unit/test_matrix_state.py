"""The Matrix sync state: the saved token passes a batch only once it is handled, and
handled events of later batches survive it (they are read again after a restart)."""

from __future__ import annotations

from pathlib import Path

from ductor.transports.matrix.state import SyncState


def test_advancing_past_a_batch_keeps_the_handled_events_of_later_batches(
    tmp_path: Path,
) -> None:
    state = SyncState(tmp_path / "sync.json").load()
    state.mark("$first-batch")
    state.mark("$second-batch")
    state.advance("token-after-first", keep={"$second-batch"})
    again = SyncState(tmp_path / "sync.json").load()
    assert again.since == "token-after-first"
    assert again.is_handled("$second-batch") and not again.is_handled("$first-batch")


def test_advancing_past_everything_forgets_the_handled_events(tmp_path: Path) -> None:
    state = SyncState(tmp_path / "sync.json").load()
    state.mark("$a")
    state.advance("token")
    assert SyncState(tmp_path / "sync.json").load().handled == []
