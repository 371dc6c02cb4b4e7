"""One database connection shared by worker threads (the campaign dialer runs every store call in
``asyncio.to_thread``): a transaction of one thread must stay whole while others write."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from voicebot.records.backend import PostgresDatabase, SqliteDatabase


def _open(target: str | Path) -> SqliteDatabase | PostgresDatabase:
    if isinstance(target, Path):
        return SqliteDatabase(target, durability="normal")
    return PostgresDatabase(target)


def test_transactions_from_many_threads_on_one_connection_do_not_nest(target: str | Path) -> None:
    db = _open(target)
    db.execute("CREATE TABLE t (thread INTEGER NOT NULL, n INTEGER NOT NULL)")
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(thread: int) -> None:
        start.wait()
        try:
            for n in range(25):
                with db.transaction():
                    db.execute("INSERT INTO t (thread, n) VALUES (?, ?)", (thread, n))
                    db.execute("UPDATE t SET n = n WHERE thread = ?", (thread,))
                db.query("SELECT count(*) FROM t")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert db.query("SELECT thread, count(*) FROM t GROUP BY thread ORDER BY thread") == [
        (k, 25) for k in range(8)]
    db.close()


@pytest.mark.unit
def test_a_failed_transaction_rolls_back_and_the_connection_goes_on(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "x.db", durability="normal")
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    with pytest.raises(RuntimeError, match="boom"), db.transaction():
        db.execute("INSERT INTO t (k) VALUES (1)")
        raise RuntimeError("boom")
    with db.transaction():
        db.execute("INSERT INTO t (k) VALUES (2)")
    assert db.query("SELECT k FROM t") == [(2,)]
    db.close()
