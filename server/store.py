"""SQLite persistence of runs: their documents, outcomes, metric history, and weights as safetensors.

One file, ``<data_dir>/dlplay.sqlite3``, with a versioned schema (``schema_version``
and the ``MIGRATIONS`` list, applied in order on open). Weights go to
``<data_dir>/weights/<run_id>.safetensors``; they are written with safetensors and
never read back with ``torch.load`` (no pickles).

The store is shared by the event loop (REST handlers) and the scheduler's worker
threads: one connection, ``check_same_thread=False``, every access under a lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors.torch import save_file

DB_NAME = "dlplay.sqlite3"

# Run states. Terminal ones never change again; "interrupted" is what a run that was
# queued/running/paused becomes when the server restarts.
ACTIVE_STATES = ("queued", "running", "paused")
TERMINAL_STATES = ("finished", "stopped", "failed", "interrupted")

# Each entry upgrades the schema by one version; never edit a released entry, append.
MIGRATIONS: list[str] = [
    # 1: runs and their metric history
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        experiment_json TEXT NOT NULL,
        summary_json TEXT,
        final_json TEXT,
        stop_reason TEXT,
        message TEXT,
        device TEXT,
        weights_path TEXT
    );
    CREATE INDEX runs_by_session ON runs (session_id, created_at);
    CREATE TABLE metrics (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        has_val INTEGER NOT NULL,
        json TEXT NOT NULL
    );
    CREATE INDEX metrics_by_run ON metrics (run_id, step);
    """,
    # 2: classrooms (issue 10; server/classroom.py): a class, its members, the runs they started
    """
    CREATE TABLE classes (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        code TEXT NOT NULL,
        teacher_key TEXT NOT NULL,
        joining_open INTEGER NOT NULL,
        created_at REAL NOT NULL,
        ended_at REAL,
        leaderboard_published INTEGER NOT NULL,
        lesson_json TEXT,
        quotas_json TEXT NOT NULL
    );
    CREATE INDEX classes_by_code ON classes (code);
    CREATE TABLE class_members (
        id TEXT PRIMARY KEY,
        class_id TEXT NOT NULL REFERENCES classes (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL,
        session_id TEXT NOT NULL,
        joined_at REAL NOT NULL,
        kicked INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX class_members_by_name ON class_members (class_id, name_key);
    CREATE INDEX class_members_by_session ON class_members (session_id);
    CREATE TABLE class_runs (
        member_id TEXT NOT NULL REFERENCES class_members (id) ON DELETE CASCADE,
        run_id TEXT NOT NULL,
        started_at REAL NOT NULL,
        params INTEGER,
        within_budget INTEGER,
        PRIMARY KEY (member_id, run_id)
    );
    CREATE INDEX class_runs_by_run ON class_runs (run_id);
    """,
]


@dataclass
class RunRecord:
    """One row of ``runs``, with the JSON columns decoded."""

    id: str
    session_id: str
    name: str
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    experiment: dict[str, Any]
    summary: dict[str, Any] | None
    final: dict[str, Any] | None
    stop_reason: str | None
    message: str | None
    device: str | None
    weights_path: str | None

    def to_dict(self, *, full: bool = True) -> dict[str, Any]:
        """JSON view for the API; ``full=False`` leaves out the documents (run lists)."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "stop_reason": self.stop_reason,
            "message": self.message,
            "device": self.device,
            "has_weights": self.weights_path is not None,
            "final": self.final,
        }
        if full:
            out["experiment"] = self.experiment
            out["summary"] = self.summary
        return out


def thin_indices(has_val: list[bool], cap: int) -> list[int]:
    """Indices of history points to drop so that at most ``cap`` remain (the thinning rule).

    Drops every second point, first and last always kept, so the spacing of the
    remaining points stays even. Points without validation figures go first: they
    are the dense ones (one every ``log_every`` steps), and dropping validation
    points first could erase the rarer validation curve. If that does not bring
    the count under ``cap``, every second remaining point goes too, and so on.
    """
    n = len(has_val)
    alive = list(range(n))
    dropped: list[int] = []
    while len(alive) > cap:
        interior = alive[1:-1]
        plain = [i for i in interior if not has_val[i]]
        pool = plain if len(plain) >= 2 else interior
        drop = set(pool[1::2]) if len(pool) > 1 else set(pool)
        if not drop:
            break
        dropped.extend(drop)
        alive = [i for i in alive if i not in drop]
    return sorted(dropped)


class Store:
    """Runs and their metric history in SQLite; weights in safetensors files.

    ``metric_cap`` is in metric points (``metrics`` messages) per run: when a run's
    history grows past it, it is thinned to about half (see ``thin_indices``).
    """

    def __init__(self, data_dir: Path, *, metric_cap: int = 2000) -> None:
        self.data_dir = Path(data_dir)
        self.weights_dir = self.data_dir / "weights"
        self.uploads_dir = self.data_dir / "uploads"
        for folder in (self.data_dir, self.weights_dir, self.uploads_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.metric_cap = metric_cap
        self.path = self.data_dir / DB_NAME
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")  # readers do not wait for the worker's writes
        self._db.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a crash loses at most the last commit
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    # -- schema ----------------------------------------------------------------

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this dlplay ({len(MIGRATIONS)}); "
                    "upgrade dlplay or point DLPLAY_DATA_DIR elsewhere"
                )
            for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
                self._db.execute("BEGIN")
                try:
                    for statement in filter(str.strip, script.split(";")):
                        self._db.execute(statement)
                    self._db.execute("DELETE FROM schema_version")
                    self._db.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._db.execute("SELECT version FROM schema_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- runs ------------------------------------------------------------------

    def create_run(self, run_id: str, session_id: str, name: str, experiment: dict[str, Any], *,
                   status: str = "queued", device: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO runs (id, session_id, name, status, created_at, experiment_json, device) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, session_id, name, status, time.time(), json.dumps(experiment), device),
            )

    def set_status(self, run_id: str, status: str, *, started: bool = False, device: str | None = None) -> None:
        """Record a state change; ``started`` stamps ``started_at`` (admission to a device)."""
        with self._lock:
            self._db.execute(
                "UPDATE runs SET status = ?, started_at = CASE WHEN ? THEN ? ELSE started_at END, "
                "device = COALESCE(?, device) WHERE id = ?",
                (status, started, time.time(), device, run_id),
            )

    def set_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("UPDATE runs SET summary_json = ? WHERE id = ?", (json.dumps(summary), run_id))

    def finish_run(self, run_id: str, status: str, *, final: dict[str, Any] | None, stop_reason: str | None,
                   message: str | None = None, weights_path: Path | None = None) -> None:
        """Record a run's outcome (status one of ``TERMINAL_STATES``)."""
        with self._lock:
            self._db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, final_json = ?, stop_reason = ?, message = ?, "
                "weights_path = ? WHERE id = ?",
                (status, time.time(), None if final is None else json.dumps(final), stop_reason, message,
                 None if weights_path is None else str(weights_path), run_id),
            )

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else _record(row)

    def list_runs(self, session_id: str) -> list[RunRecord]:
        """A session's runs, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM runs WHERE session_id = ? ORDER BY created_at DESC", (session_id,)
            ).fetchall()
        return [_record(row) for row in rows]

    def delete_run(self, run_id: str) -> bool:
        """Remove a run, its history and its weights file; False when there was no such run."""
        record = self.get_run(run_id)
        if record is None:
            return False
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            self._db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            self._db.execute("COMMIT")
        if record.weights_path:
            Path(record.weights_path).unlink(missing_ok=True)
        return True

    def mark_interrupted(self) -> int:
        """At startup: runs left queued/running/paused by a previous process become "interrupted"."""
        placeholders = ",".join("?" * len(ACTIVE_STATES))
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE runs SET status = 'interrupted', finished_at = COALESCE(finished_at, ?), "
                f"stop_reason = COALESCE(stop_reason, 'interrupted'), "
                f"message = COALESCE(message, 'The server stopped while this run was active.') "
                f"WHERE status IN ({placeholders})",
                (time.time(), *ACTIVE_STATES),
            )
            return cursor.rowcount

    # -- metric history ----------------------------------------------------------

    def append_metrics(self, batches: Iterable[tuple[str, list[dict[str, Any]]]]) -> None:
        """Append metric points (stamped ``metrics`` messages) for several runs in one transaction.

        Each run's history is then thinned if it holds more than ``metric_cap`` points.
        """
        batches = [(run_id, points) for run_id, points in batches if points]
        if not batches:
            return
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for run_id, points in batches:
                    self._db.executemany(
                        "INSERT INTO metrics (run_id, step, has_val, json) VALUES (?, ?, ?, ?)",
                        [(run_id, int(p.get("step") or 0), p.get("val_loss") is not None, json.dumps(p)) for p in points],
                    )
                    self._thin(run_id)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _thin(self, run_id: str) -> None:
        (count,) = self._db.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()
        if count <= self.metric_cap:
            return
        rows = self._db.execute(
            "SELECT rowid, has_val FROM metrics WHERE run_id = ? ORDER BY step, rowid", (run_id,)
        ).fetchall()
        # Thin to half the cap, so the next thinning is cap/2 appends away, not one.
        drop = thin_indices([bool(r[1]) for r in rows], self.metric_cap // 2)
        self._db.executemany("DELETE FROM metrics WHERE rowid = ?", [(rows[i][0],) for i in drop])

    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        """A run's stored metric points (stamped messages), in step order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT json FROM metrics WHERE run_id = ? ORDER BY step, rowid", (run_id,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- classrooms (issue 10; the logic is server/classroom.py's) ---------------

    # Columns of ``classes`` a class may change after it was created.
    CLASS_FIELDS = ("title", "joining_open", "ended_at", "leaderboard_published", "lesson_json", "quotas_json")

    def create_class(self, row: dict[str, Any]) -> None:
        """Insert a ``classes`` row (every column of the table, by name)."""
        columns = ", ".join(row)
        with self._lock:
            self._db.execute(f"INSERT INTO classes ({columns}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))

    def update_class(self, class_id: str, **fields: Any) -> None:
        """Change some of ``CLASS_FIELDS`` of a class."""
        unknown = set(fields) - set(self.CLASS_FIELDS)
        if unknown:
            raise ValueError(f"not a changeable column of classes: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(f"UPDATE classes SET {assignments} WHERE id = ?", (*fields.values(), class_id))

    def open_class(self) -> dict[str, Any] | None:
        """The newest class that has not ended (a restart reopens it), as a row dict; None if every class ended."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM classes WHERE ended_at IS NULL ORDER BY created_at DESC LIMIT 1").fetchone()
        return None if row is None else dict(row)

    def classes_with_code(self, code: str) -> list[dict[str, Any]]:
        """Every class (ended or not) with this join code, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM classes WHERE code = ? ORDER BY created_at DESC", (code,)).fetchall()
        return [dict(row) for row in rows]

    def add_member(self, row: dict[str, Any]) -> bool:
        """Insert a ``class_members`` row; False when the class already has a member of that ``name_key``."""
        columns = ", ".join(row)
        with self._lock:
            try:
                self._db.execute(f"INSERT INTO class_members ({columns}) VALUES ({', '.join('?' * len(row))})",
                                 tuple(row.values()))
            except sqlite3.IntegrityError:
                return False
        return True

    def class_members(self, class_id: str) -> list[dict[str, Any]]:
        """A class's members (kicked ones too), in the order they joined."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM class_members WHERE class_id = ? ORDER BY joined_at, rowid", (class_id,)).fetchall()
        return [dict(row) for row in rows]

    def set_member_kicked(self, member_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE class_members SET kicked = 1 WHERE id = ?", (member_id,))

    def add_class_run(self, member_id: str, run_id: str, *, started_at: float, params: int | None,
                      within_budget: bool | None) -> None:
        """Record that a member started a run (with its parameter count and challenge standing, when known)."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO class_runs (member_id, run_id, started_at, params, within_budget) "
                "VALUES (?, ?, ?, ?, ?)",
                (member_id, run_id, started_at, params, None if within_budget is None else int(within_budget)))

    def class_runs(self, class_id: str) -> list[dict[str, Any]]:
        """The runs a class's members started, oldest first: ``member_id, run_id, started_at, params, within_budget``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT r.* FROM class_runs r JOIN class_members m ON m.id = r.member_id WHERE m.class_id = ? "
                "ORDER BY r.started_at, r.rowid", (class_id,)).fetchall()
        return [dict(row) for row in rows]

    # -- weights -----------------------------------------------------------------

    def save_weights(self, run_id: str, state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
        """Write a model's tensors to ``weights/<run_id>.safetensors`` (CPU copies; shared storage untied)."""
        tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in state_dict.items()}
        path = self.weights_dir / f"{run_id}.safetensors"
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata=metadata)
        tmp.replace(path)
        return path


def _record(row: sqlite3.Row) -> RunRecord:
    def load(text: str | None) -> Any:
        return None if text is None else json.loads(text)

    return RunRecord(
        id=row["id"], session_id=row["session_id"], name=row["name"], status=row["status"],
        created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
        experiment=load(row["experiment_json"]), summary=load(row["summary_json"]), final=load(row["final_json"]),
        stop_reason=row["stop_reason"], message=row["message"], device=row["device"], weights_path=row["weights_path"],
    )
