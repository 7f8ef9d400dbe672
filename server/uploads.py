"""The upload store: users' dataset files, measured before they are parsed, owned by a session, bounded and expiring.

An upload goes through four gates, each cheaper than the next step it protects:

1. quota by count, before a byte is read (``check_room``);
2. ``receive``: the multipart body streams to a file under ``<uploads>/.incoming`` with the
   byte limit enforced as it arrives (Content-Length is not trusted) and, for a CSV, its
   rows counted as they arrive: 60,001 rows are refused at row 60,001, not after parsing;
3. ``measure``: the examples and their float32 bytes, from the row count (CSV) or the .npy
   headers inside the archive (NPZ), against the per-file limits and the quotas by bytes;
4. parsing (``server.datasets.parse_upload``), a few at a time (``upload_parse_slots``).

Each stored upload ``<id>.npz`` has a ``<id>.json`` beside it: its owner (a hash of the
session id, never the id itself), when it was made, and what it holds. A session lists
and uses only its own uploads: another session's id answers exactly like a missing one.
Uploads older than ``upload_max_age_seconds`` are deleted at start and by a periodic sweep.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import secrets
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import numpy as np
import python_multipart
from python_multipart.exceptions import FormParserError
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import parse_options_header

from server.config import Settings
from server.datasets import UPLOAD_PREFIX, DataError, UploadedData, parse_upload, save_upload
from server.datasets.uploads import UPLOAD_ID, upload_id_of
from server.schemas import DataSpec

log = logging.getLogger("dlplay.uploads")

INCOMING = ".incoming"  # folder of bodies still arriving or being checked
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
INCOMING_MAX_AGE = 3600.0  # seconds: a partial file older than this belongs to no request any more
MAX_FORM_FIELDS = 8  # small text fields allowed beside the file
MAX_FIELD_BYTES = 64 * 1024  # bytes per text field
MULTIPART_OVERHEAD = 64 * 1024  # bytes of envelope (boundaries, part headers) allowed around the file


class UploadError(Exception):
    """An upload refused: ``status`` is the HTTP status, ``detail`` says what and how to fix it."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def owner_key(session_id: str) -> str:
    """What the store records as an upload's owner: a hash, so the files never hold a usable session id."""
    return hashlib.sha256(f"dlplay-upload-owner:{session_id}".encode()).hexdigest()[:32]


@dataclass
class UploadRecord:
    """One stored upload: what ``<id>.json`` holds. ``nbytes``: its examples as float32 plus int64 labels."""

    id: str
    owner: str
    created: float  # seconds since the epoch
    filename: str
    kind: str
    input_shape: list[int]
    classes: list[str]
    n: int
    nbytes: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """What the API shows (no owner)."""
        return {
            "id": self.id, "name": f"{UPLOAD_PREFIX}{self.id}", "filename": self.filename, "kind": self.kind,
            "input_shape": list(self.input_shape), "classes": list(self.classes), "n": self.n,
            "bytes": self.nbytes, "created": self.created, "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------
# Counting rows while they arrive
# ---------------------------------------------------------------------------

# What str.splitlines() (the CSV parser's) treats as line ends, as UTF-8 bytes: \n \r \v \f \x1c-\x1e, and
# U+0085, U+2028, U+2029. Counting all of them means no line separator slips a million rows past the count.
_BREAK = re.compile(rb"[\n\r\x0b\x0c\x1c\x1d\x1e]|\xc2\x85|\xe2\x80[\xa8\xa9]")
# A line with content: its first non-blank byte, then the rest of the line (possessive: no backtracking).
_CONTENT = rb"(?:[^ \t\n\r\x0b\x0c\x1c\x1d\x1e\xc2\xe2]|\xc2(?!\x85)|\xe2(?!\x80[\xa8\xa9]))"
_REST = rb"(?:[^\n\r\x0b\x0c\x1c\x1d\x1e\xc2\xe2]|\xc2(?!\x85)|\xe2(?!\x80[\xa8\xa9]))*+"
_LINE = re.compile(_CONTENT + _REST)


class LineCounter:
    """Counts non-blank lines of a byte stream fed in arbitrary chunks, in C-speed regex scans.

    A line split across chunks is counted once (``_inside`` remembers that the current
    line already was). A multi-byte line break split across two chunks may be missed,
    which can only make the count an upper bound of the parser's by one per chunk.
    """

    def __init__(self) -> None:
        self.lines = 0
        self._inside = False  # the last chunk ended inside a counted line

    def feed(self, chunk: bytes, stop_after: int | None = None) -> int:
        """Count the lines in ``chunk``; stops early once the total passes ``stop_after``. Returns the total."""
        start = 0
        if self._inside:
            found = _BREAK.search(chunk)
            if found is None:
                return self.lines  # still the same line
            start = found.end()
            self._inside = False
        last_end = -1
        for match in _LINE.finditer(chunk, start):
            self.lines += 1
            last_end = match.end()
            if stop_after is not None and self.lines > stop_after:
                return self.lines
        if last_end == len(chunk):  # a line runs up to the chunk's end: the next chunk may continue it
            self._inside = True
        return self.lines


# ---------------------------------------------------------------------------
# Receiving a multipart body onto disk
# ---------------------------------------------------------------------------


@dataclass
class Incoming:
    """A received file on disk: ``path`` (under .incoming), the user's ``filename``, ``size`` in bytes and,
    for CSV files, ``lines`` (non-blank lines, header included)."""

    path: Path
    filename: str
    size: int
    lines: int | None

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def _too_large(limit: int) -> UploadError:
    return UploadError(
        413, f"the upload is larger than the limit of {limit:,} bytes ({limit / 1024**2:.0f} MB). "
        "Fix: upload fewer examples, or save an NPZ with numpy.savez_compressed",
    )


async def receive(stream: AsyncIterator[bytes], content_type: str, incoming_dir: Path, *,
                  max_bytes: int, max_rows: int, declared_length: str | None = None) -> Incoming:
    """Stream a multipart/form-data body to a file in ``incoming_dir``; the file is the part named 'file'.

    Raises UploadError: 413 as soon as the file passes ``max_bytes`` (or the whole body
    that plus MULTIPART_OVERHEAD, whatever its Content-Length said; a declared length
    over it is refused before reading) or a CSV passes ``max_rows`` rows (+1 for a
    header); 400 for a malformed body or no 'file' part. Nothing of a refused upload is left on disk.
    """
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadError(400, "send the file as multipart/form-data in a field named 'file'")
    max_body = max_bytes + MULTIPART_OVERHEAD
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > max_body:
        raise _too_large(max_bytes)
    incoming_dir.mkdir(parents=True, exist_ok=True)
    path = incoming_dir / f"{secrets.token_hex(8)}.part"
    state: dict[str, Any] = {"headers": [], "name": b"", "value": b"", "part": None, "found": None, "fields": 0}
    counter: LineCounter | None = None
    received = 0
    sink = None
    pending: list[bytes] = []  # file bytes of the current chunk, written after the parser returns

    def on_part_begin() -> None:
        state["part"] = {"field": None, "filename": None, "text": 0}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        if state["name"].lower() == b"content-disposition":
            _, disposition = parse_options_header(state["value"].decode("latin-1"))
            part = state["part"]
            part["field"] = disposition.get(b"name", b"").decode("utf-8", "replace")
            if b"filename" in disposition:
                part["filename"] = disposition[b"filename"].decode("utf-8", "replace")
        state["name"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        nonlocal sink, counter
        part = state["part"]
        if part["field"] == "file" and part["filename"] is not None:
            if state["found"] is not None:
                raise UploadError(400, "send one file per upload")
            state["found"] = part["filename"] or "upload"
            sink = open(path, "wb")  # noqa: SIM115 - closed in the finally below
            if Path(state["found"]).suffix.lower() in CSV_SUFFIXES:
                counter = LineCounter()
        else:
            state["fields"] += 1
            if state["fields"] > MAX_FORM_FIELDS:
                raise UploadError(400, f"too many form fields; send just the file (at most {MAX_FORM_FIELDS} fields)")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal received
        part = state["part"]
        if sink is not None and part["field"] == "file" and part["filename"] is not None:
            chunk = data[start:end]
            received += len(chunk)
            if received > max_bytes:
                raise _too_large(max_bytes)
            if counter is not None and counter.feed(chunk, stop_after=max_rows + 1) > max_rows + 1:
                raise UploadError(
                    413, f"upload '{Path(state['found']).name[:80]}' has more than {max_rows:,} rows; the limit is "
                    f"{max_rows:,} examples. Fix: upload at most {max_rows:,} rows (a header line is allowed)")
            pending.append(chunk)
        else:
            part["text"] += end - start
            if part["text"] > MAX_FIELD_BYTES:
                raise UploadError(400, f"a form field is over {MAX_FIELD_BYTES // 1024} KB; send just the file")

    def on_part_end() -> None:
        nonlocal sink
        if sink is not None and state["part"]["field"] == "file":
            sink.write(b"".join(pending))
            pending.clear()
            sink.close()
            sink = None

    parser = python_multipart.MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
        "on_header_field": on_header_field, "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
    })
    body = 0
    try:
        async for chunk in stream:
            body += len(chunk)
            if body > max_body:  # junk around the parts counts too
                raise _too_large(max_bytes)
            parser.write(chunk)
            if sink is not None and pending:
                data = b"".join(pending)
                pending.clear()
                await run_in_threadpool(sink.write, data)  # disk writes off the event loop
        parser.finalize()
    except UploadError:
        _cleanup(sink, path)
        raise
    except FormParserError as error:
        _cleanup(sink, path)
        raise UploadError(400, f"could not read the upload: {error}") from None
    except BaseException:
        _cleanup(sink, path)
        raise
    if sink is not None:  # the body ended inside the file part
        _cleanup(sink, path)
        raise UploadError(400, "could not read the upload: the body ended before the file did")
    if state["found"] is None:
        path.unlink(missing_ok=True)
        raise UploadError(400, "no file in the upload. Fix: send it in a field named 'file'")
    return Incoming(path=path, filename=state["found"], size=received, lines=None if counter is None else counter.lines)


def _cleanup(sink: Any, path: Path) -> None:
    if sink is not None:
        sink.close()
    path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# Measuring before parsing
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """What a received file will hold, found without parsing it: ``examples`` and their float32 ``nbytes``."""

    examples: int
    nbytes: int


def _npy_header(archive: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype]:
    with archive.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = read(stream)
    return tuple(int(s) for s in shape), dtype


def _is_number(cell: bytes) -> bool:
    try:
        float(cell.decode("utf-8-sig").strip())
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def measure(incoming: Incoming) -> Measure | None:
    """Examples and float32 bytes of a received file, from its row count (CSV) or .npy headers (NPZ).

    None when the file cannot be measured this way (not a CSV or an archive with an
    ``x.npy``): the parser then says what is wrong with it, cheaply.
    """
    suffix = Path(incoming.filename).suffix.lower()
    if suffix in CSV_SUFFIXES:
        rows = incoming.lines or 0
        with open(incoming.path, "rb") as stream:
            head = stream.read(1 << 20)
        first = next((line for line in head.splitlines() if line.strip()), b"")
        delimiter = max((b",", b";", b"\t"), key=first.count)
        columns = first.count(delimiter) + 1
        if rows and not all(_is_number(cell) for cell in first.split(delimiter)):
            rows -= 1  # a header line (a non-numeric cell, as the parser decides), not an example
        features = max(columns - 1, 1)
        if b"\n" not in first and incoming.size > len(first):  # a first line over 1 MiB: bound by the bytes
            features = incoming.size // 2
        return Measure(rows, rows * (features * 4 + 8))
    if suffix == ".npz":
        try:
            with zipfile.ZipFile(incoming.path) as archive:
                x_shape, _ = _npy_header(archive, "x.npy")
        except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error, RuntimeError, NotImplementedError):
            # The parser reports a missing x or a broken archive with its own words (RuntimeError: an encrypted
            # member; NotImplementedError: a compression zipfile lacks; zlib.error: a corrupt deflate stream).
            return None
        if not x_shape:
            return None
        return Measure(x_shape[0], x_shape[0] * (math.prod(x_shape[1:]) * 4 + 8))
    return None


# ---------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------


class UploadStore:
    """Stored dataset uploads under ``uploads_dir``: receive, list, use, delete, expire; see the module docstring.

    Thread-safe (one lock around the records and the quota reservations); parsing and
    compression run outside it. ``start()`` sweeps and starts the periodic sweep, ``close()`` stops it.
    """

    def __init__(self, uploads_dir: Path, settings: Settings, *,
                 on_delete: Callable[[str], None] | None = None) -> None:
        self.dir = Path(uploads_dir)
        self.on_delete = on_delete  # told each deleted upload's id (the app drops it from the dataset cache)
        self.incoming_dir = self.dir / INCOMING
        self.settings = settings
        self._lock = threading.Lock()
        self._reserved: dict[str, int] = {}  # owner -> bytes of uploads being parsed
        self._reserved_files: dict[str, int] = {}
        self._parse_slots = threading.BoundedSemaphore(settings.upload_parse_slots)
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self.dir.mkdir(parents=True, exist_ok=True)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Sweep now (expired uploads, leftovers of interrupted ones), then every ``upload_sweep_seconds``."""
        self.sweep(incoming_max_age=0.0)  # at start no request is receiving anything
        self._stop.clear()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="dlplay-upload-sweep", daemon=True)
        self._sweeper.start()

    def close(self) -> None:
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
            self._sweeper = None

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.settings.upload_sweep_seconds):
            try:
                self.sweep()
            except Exception:  # a sweep that fails (disk trouble) must not end the sweeping
                log.exception("upload sweep failed")

    def sweep(self, now: float | None = None, *, incoming_max_age: float = INCOMING_MAX_AGE) -> int:
        """Delete uploads older than ``upload_max_age_seconds`` (and stale partial files); returns how many uploads."""
        now = time.time() if now is None else now
        cutoff = now - self.settings.upload_max_age_seconds
        deleted = 0
        with self._lock:
            for record in self._records():
                if record.created < cutoff:
                    self._remove(record.id)
                    deleted += 1
            for data in self.dir.glob("*.npz"):  # files without a record: interrupted saves, older versions
                if not data.with_suffix(".json").exists() and _mtime(data) < cutoff:
                    data.unlink(missing_ok=True)
                    deleted += 1
        if self.incoming_dir.is_dir():
            for partial in self.incoming_dir.iterdir():
                if _mtime(partial) <= now - incoming_max_age:
                    partial.unlink(missing_ok=True)
        if deleted:
            log.info("deleted %d expired upload(s)", deleted)
        return deleted

    # -- reading -------------------------------------------------------------------------

    def _records(self) -> list[UploadRecord]:
        records = []
        for meta in self.dir.glob("*.json"):
            record = self._read(meta.stem)
            if record is not None:
                records.append(record)
        return records

    def _read(self, upload_id: str) -> UploadRecord | None:
        if not UPLOAD_ID.fullmatch(upload_id):
            return None
        try:
            data = json.loads((self.dir / f"{upload_id}.json").read_text(encoding="utf-8"))
            record = UploadRecord(**data)
        except (OSError, ValueError, TypeError):
            return None
        return record if (self.dir / f"{upload_id}.npz").is_file() else None

    def list(self, session_id: str) -> list[UploadRecord]:
        """This session's uploads, oldest first."""
        owner = owner_key(session_id)
        with self._lock:
            mine = [r for r in self._records() if r.owner == owner]
        return sorted(mine, key=lambda r: (r.created, r.id))

    def get(self, session_id: str, upload_id: str) -> UploadRecord | None:
        """The session's upload ``upload_id``, or None (missing, expired, or another session's: the same answer)."""
        record = self._read(upload_id)
        return record if record is not None and record.owner == owner_key(session_id) else None

    def delete(self, session_id: str, upload_id: str) -> bool:
        """Delete one of the session's uploads; False when it has none by that id."""
        with self._lock:
            if self.get(session_id, upload_id) is None:
                return False
            self._remove(upload_id)
        return True

    def _remove(self, upload_id: str) -> None:
        (self.dir / f"{upload_id}.json").unlink(missing_ok=True)
        (self.dir / f"{upload_id}.npz").unlink(missing_ok=True)
        if self.on_delete is not None:
            self.on_delete(upload_id)

    def check_access(self, spec: DataSpec, session_id: str) -> None:
        """Raise DataError when ``spec`` names an upload that is not this session's (as if it did not exist)."""
        if not spec.name.startswith(UPLOAD_PREFIX):
            return
        upload_id = spec.name.removeprefix(UPLOAD_PREFIX)
        if self.get(session_id, upload_id) is None:
            raise DataError("no such upload in this session (it may have expired)",
                            "upload the file again, or pick one from your uploads",
                            culprit=f"dataset '{UPLOAD_PREFIX}{upload_id[:40]}'")

    def for_session(self, session_id: str) -> SessionUploads:
        return SessionUploads(self, session_id)

    # -- quotas --------------------------------------------------------------------------

    def usage(self, session_id: str | None = None) -> tuple[int, int]:
        """(files, bytes) stored plus reserved, of one session or (None) of the whole server."""
        with self._lock:
            return self._usage(None if session_id is None else owner_key(session_id))

    def _usage(self, owner: str | None) -> tuple[int, int]:
        records = [r for r in self._records() if owner is None or r.owner == owner]
        if owner is None:
            files = len(records) + sum(self._reserved_files.values())
            nbytes = sum(r.nbytes for r in records) + sum(self._reserved.values())
        else:
            files = len(records) + self._reserved_files.get(owner, 0)
            nbytes = sum(r.nbytes for r in records) + self._reserved.get(owner, 0)
        return files, nbytes

    def check_room(self, session_id: str, nbytes: int = 0) -> None:
        """Raise UploadError unless one more upload of ``nbytes`` fits the session's and the server's quotas."""
        with self._lock:
            self._check_room(owner_key(session_id), nbytes)

    def _check_room(self, owner: str, nbytes: int, files_added: int = 1) -> None:
        """Raise UploadError (429 session, 507 server) unless ``files_added`` more files and ``nbytes`` fit (lock held)."""
        s = self.settings
        files, used = self._usage(owner)
        if files + files_added > s.upload_quota_files_per_session:
            raise UploadError(429, f"this session already has {files} uploads, its limit. Fix: delete one you no "
                                   "longer need (DELETE /api/uploads/{id}); uploads also expire after "
                                   f"{s.upload_max_age_seconds / 86400:g} days")
        if used + nbytes > s.upload_quota_bytes_per_session:
            raise UploadError(429, f"this upload ({_mb(nbytes)}) would bring this session's uploads to "
                                   f"{_mb(used + nbytes)}; the limit is {_mb(s.upload_quota_bytes_per_session)}. "
                                   "Fix: delete uploads you no longer need, or upload fewer examples")
        all_files, all_used = self._usage(None)
        if all_files + files_added > s.upload_quota_files or all_used + nbytes > s.upload_quota_bytes:
            raise UploadError(507, f"the server's upload space is full ({all_files} files, {_mb(all_used)} of "
                                   f"{_mb(s.upload_quota_bytes)}). Fix: try again later (uploads expire), or ask "
                                   "whoever runs the server to make room")

    @contextlib.contextmanager
    def _reservation(self, owner: str, nbytes: int) -> Iterator[Callable[[int], None]]:
        """Hold quota for an upload being parsed, so that parallel uploads cannot both take the last room.

        Yields ``resize(exact_bytes)``: once parsed, the upload's exact size replaces the
        estimate, and must still fit (it raises UploadError otherwise).
        """
        held = [nbytes]
        with self._lock:
            self._check_room(owner, nbytes)
            self._reserved[owner] = self._reserved.get(owner, 0) + nbytes
            self._reserved_files[owner] = self._reserved_files.get(owner, 0) + 1

        def resize(exact: int) -> None:
            with self._lock:
                self._reserved[owner] += exact - held[0]
                held[0] = exact
                self._check_room(owner, 0, files_added=0)  # this upload is among the reserved ones

        try:
            yield resize
        finally:
            with self._lock:
                self._reserved[owner] -= held[0]
                self._reserved_files[owner] -= 1
                if not self._reserved_files[owner]:
                    del self._reserved[owner], self._reserved_files[owner]

    # -- adding ----------------------------------------------------------------------------

    async def add(self, session_id: str, stream: AsyncIterator[bytes], content_type: str,
                  declared_length: str | None = None) -> UploadRecord:
        """Receive, measure, parse and store one upload for ``session_id``; raises UploadError (with its status).

        ``declared_length``: the request's Content-Length, only to refuse an oversized body before reading it.
        """
        s = self.settings
        self.check_room(session_id)  # by count, before reading anything
        incoming = await receive(stream, content_type, self.incoming_dir, max_bytes=s.max_upload_bytes,
                                 max_rows=s.max_upload_examples, declared_length=declared_length)
        try:
            size = measure(incoming)
            name = Path(incoming.filename.replace("\\", "/")).name[:80] or "upload"
            if size is not None:
                if size.examples > s.max_upload_examples:
                    raise UploadError(413, f"upload '{name}' has {size.examples:,} examples; the limit is "
                                           f"{s.max_upload_examples:,}. Fix: keep at most {s.max_upload_examples:,}")
                if size.nbytes > s.max_upload_dataset_bytes:
                    raise UploadError(413, f"upload '{name}' holds {_mb(size.nbytes)} of examples as float32; the "
                                           f"limit is {_mb(s.max_upload_dataset_bytes)}. Fix: upload fewer or smaller "
                                           "examples")
            return await run_in_threadpool(self._parse_and_store, session_id, incoming,
                                           0 if size is None else size.nbytes)
        finally:
            incoming.discard()

    def _parse_and_store(self, session_id: str, incoming: Incoming, estimate: int) -> UploadRecord:
        s = self.settings
        owner = owner_key(session_id)
        with self._reservation(owner, estimate) as reservation:
            if not self._parse_slots.acquire(timeout=s.dataset_wait_seconds):
                raise UploadError(503, "the server is busy reading other uploads. Fix: try again in a few seconds")
            try:
                data = incoming.path.read_bytes()  # at most max_upload_bytes
                try:
                    uploaded = parse_upload(incoming.filename, data, max_bytes=s.max_upload_bytes,
                                            max_examples=s.max_upload_examples)
                except DataError as error:
                    raise UploadError(400, str(error)) from None
                finally:
                    del data
            finally:
                self._parse_slots.release()
            nbytes = int(uploaded.x.astype(np.float32, copy=False).nbytes + uploaded.y.nbytes)
            if nbytes > s.max_upload_dataset_bytes:
                raise UploadError(413, f"upload '{uploaded.filename}' holds {_mb(nbytes)} of examples as float32; "
                                       f"the limit is {_mb(s.max_upload_dataset_bytes)}. Fix: upload fewer examples")
            upload_id = hashlib.sha256(f"{owner}:{upload_id_of(uploaded)}".encode()).hexdigest()[:16]
            existing = self._read(upload_id)
            if existing is not None:  # the same data again from the same session: one file, one id
                return existing
            reservation(nbytes)  # the exact size, now known, against the quotas
            save_upload(uploaded, self.dir, upload_id=upload_id)
            record = _record_of(uploaded, upload_id, owner, nbytes)
            _write_json(self.dir / f"{upload_id}.json", dataclasses.asdict(record))
            return record


class SessionUploads:
    """One session's view of the store: what validation needs to refuse another session's upload."""

    def __init__(self, store: UploadStore, session_id: str) -> None:
        self.store = store
        self.session_id = session_id

    def check_access(self, spec: DataSpec) -> None:
        self.store.check_access(spec, self.session_id)


def _record_of(uploaded: UploadedData, upload_id: str, owner: str, nbytes: int) -> UploadRecord:
    return UploadRecord(
        id=upload_id, owner=owner, created=time.time(), filename=uploaded.filename, kind=uploaded.kind,
        input_shape=[int(s) for s in uploaded.input_shape], classes=[str(c) for c in uploaded.classes],
        n=uploaded.n, nbytes=nbytes, notes=list(uploaded.notes),
    )


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically (a reader never sees half a record)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return math.inf


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1024**2:,.1f} MB"
