"""A coordinator daemon restarted on a damaged journal (#16 item 6): with its database
truncated to 0 bytes after it acknowledged jobs, or with garbage written into it, the daemon
does not start as new (every acknowledged job would answer 404) and does not serve errors: it
exits non-zero with one line naming the file, SABOT_DATA_DIR and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

import sabot_test_nodes as nodes


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_restart_on_a_damaged_journal_stops_with_one_clear_line(tmp_path: Path,
                                                                  damage: str) -> None:
    cluster = nodes.Cluster(tmp_path / "c", {})
    coordinator = cluster.start_coordinator()
    try:
        for _ in range(3):
            coordinator.submit(list(range(2000)))  # acknowledged, journaled (no worker)
        coordinator.kill()
        db = Path(coordinator.env["SABOT_DATA_DIR"]) / "coordinator.sqlite3"
        for wal in db.parent.glob("coordinator.sqlite3-*"):
            wal.unlink()  # what the copy a user restores from looks like: no WAL
        if damage == "truncated":
            db.write_bytes(b"")
        else:
            data = bytearray(db.read_bytes())
            data[len(data) // 2:len(data) // 2 + 8192] = b"\x5a" * 8192
            db.write_bytes(bytes(data))
        restarted = cluster.restart_coordinator(wait=False)
        code = restarted.proc.wait(60)  # type: ignore[union-attr]
        text = restarted.log_text()
        restarted.kill()
        assert code not in (0, None), text
        lines = [line for line in text.splitlines() if str(db) in line]
        assert lines, text
        assert "SABOT_DATA_DIR" in lines[-1] and "backup" in lines[-1], text
        assert "Traceback" not in text, text
    finally:
        cluster.stop()
