"""Write the reliability corpus: hostile websocket frames, REST requests and upload files, with what each must get.

    .venv/bin/python tests/reliability/make_corpus.py      # rewrites tests/reliability/corpus/

The corpus is committed so that a review sees every case; this script is how it is made, and
test_corpus.py checks the committed files are what it makes. ``test_corpus_replay.py`` replays it
against a real server. Each case says what must come back:

- ``ws_frames.jsonl``: one frame per line, ``{"name", "frame", "expect"}`` with ``expect`` an error
  code of server/messages.py (or "pong"). ``"$RUN"`` in a frame is the id of a run the replay keeps
  training; ``"pad": n`` appends n spaces (still JSON) to make a frame too large; ``"binary": true``
  sends it as a binary frame.
- ``rest_requests.jsonl``: ``{"name", "method", "path", "expect"}`` with a body as ``json``, raw
  ``body`` text, or ``upload`` (a file of ``uploads/``); ``detail`` is a piece the error's
  ``detail`` (or, for POST /api/validate, its first problem's ``path``) must contain.
- ``uploads/``: damaged, hostile and absurd .npz and .csv files, made here byte by byte.
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

CORPUS = Path(__file__).resolve().parent / "corpus"

# The replay server's max_message_bytes (the setting's minimum is 256): small, so the too-large case stays small.
MAX_MESSAGE_BYTES = 64 * 1024

# A document that validates: the absurd ones below each break one thing in it.
GOOD_EXPERIMENT: dict[str, Any] = {
    "data": {"name": "spiral", "n_samples": 200, "seed": 1},
    "network": {"layers": [
        {"kind": "linear", "name": "hidden", "out_features": 8, "activation": "tanh"},
        {"kind": "linear", "name": "out", "out_features": 2},
    ]},
    "train": {"optimizer": {"kind": "adam", "lr": 0.03}, "batch_size": 32, "max_steps": 50},
}


def _edit(path: str, value: Any) -> dict[str, Any]:
    """GOOD_EXPERIMENT with the field at dotted ``path`` set to ``value`` (list items by index)."""
    document = json.loads(json.dumps(GOOD_EXPERIMENT))
    *parents, last = path.split(".")
    node: Any = document
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return document


# (name, document, the path its first problem names): each validates in shape but asks for the absurd.
ABSURD_EXPERIMENTS: list[tuple[str, Any, str]] = [
    ("seed beyond 64 bits", _edit("train.seed", 2**64), "train.seed"),
    ("negative seed beyond 64 bits", _edit("train.seed", -(2**63) - 1), "train.seed"),
    ("data seed of 400 digits", _edit("data.seed", 10**400), "data.seed"),
    ("freeze names no layer", _edit("train.freeze", ["conv9"]), "train.freeze"),
    ("learning rate 1e999", _edit("train.optimizer.lr", "$INF"), "train.optimizer.lr"),
    ("negative learning rate", _edit("train.optimizer.lr", -1), "train.optimizer.lr"),
    ("a trillion units", _edit("network.layers.0.out_features", 10**12), "network.layers.0"),
    ("zero units", _edit("network.layers.0.out_features", 0), "network.layers.0"),
    ("a billion samples", _edit("data.n_samples", 10**9), "data.n_samples"),
    ("batch of zero", _edit("train.batch_size", 0), "train"),
    ("no layers", _edit("network.layers", []), "network.layers"),
    ("300 layers", _edit("network.layers", [{"kind": "linear", "name": f"l{i}", "out_features": 2} for i in range(300)]),
     "network.layers"),
    ("unknown layer kind", _edit("network.layers.0", {"kind": "quantum", "name": "q"}), "network.layers.0"),
    ("layer name with a path", _edit("network.layers.0.name", "../../etc/passwd"), "network.layers.0.name"),
    ("upload id with a path", _edit("data.name", "upload:../../etc/passwd"), "data"),
    ("dataset name of 10,000 characters", _edit("data.name", "x" * 10_000), "data"),
    ("unknown field", _edit("train.turbo", True), "train.turbo"),
    ("epochs of 1e300", _edit("train.epochs", 1e300), "train.epochs"),
    ("document is a list", [GOOD_EXPERIMENT], ""),
]


def _json(value: Any) -> str:
    """Compact JSON, where the placeholder "$INF" becomes the literal 1e999 (which decoders read as infinity)."""
    return json.dumps(value, separators=(",", ":")).replace('"$INF"', "1e999")


def ws_frames() -> list[dict[str, Any]]:
    deep = 1000
    cases: list[dict[str, Any]] = [
        # Nesting: a decoder must not recurse into it (it used to drop the socket with 1006).
        {"name": "array nested 1,000 deep", "frame": "[" * deep + "]" * deep, "expect": "bad_json"},
        {"name": "object nested 10,000 deep", "frame": '{"a":' * 10_000 + "1" + "}" * 10_000, "expect": "bad_json"},
        {"name": "id nested 40 deep", "frame": '{"cmd":"ping","id":' + "[" * 40 + "]" * 40 + "}", "expect": "bad_json"},
        {"name": "brackets inside a string are not nesting", "frame": '{"cmd":"ping","id":"' + "[" * 5000 + '"}',
         "expect": "pong"},
        # Numbers no field can take.
        {"name": "set lr of 401 digits", "frame": '{"cmd":"set","run_id":"$RUN","lr":1' + "0" * 400 + "}",
         "expect": "bad_arguments"},
        {"name": "set lr of 5,000 digits (past Python's int parsing limit)",
         "frame": '{"cmd":"set","run_id":"$RUN","lr":1' + "0" * 5000 + "}", "expect": "bad_arguments"},
        {"name": "probe index 1e999", "frame": '{"cmd":"probe","run_id":"$RUN","probe":"boundary","index":1e999}',
         "expect": "bad_arguments"},
        {"name": "predict input with 1e999", "frame": '{"cmd":"predict","run_id":"$RUN","input":[1e999,0]}',
         "expect": "bad_arguments"},
        {"name": "speed 1e999", "frame": '{"cmd":"speed","run_id":"$RUN","steps_per_s":1e999}', "expect": "bad_arguments"},
        {"name": "after_seq beyond 64 bits", "frame": '{"cmd":"subscribe","run_id":"$RUN","after_seq":' + "9" * 30 + "}",
         "expect": "bad_arguments"},
        {"name": "views index of 25 digits", "frame": '{"cmd":"views","run_id":"$RUN","views":{"boundary":{},"saliency":'
         '{"index":' + "7" * 25 + "}}}", "expect": "bad_arguments"},
        {"name": "id 1e999", "frame": '{"cmd":"ping","id":1e999}', "expect": "bad_arguments"},
        {"name": "NaN literal", "frame": '{"cmd":"set","run_id":"$RUN","lr":NaN}', "expect": "bad_json"},
        {"name": "Infinity literal", "frame": '{"cmd":"set","run_id":"$RUN","momentum":-Infinity}', "expect": "bad_json"},
        # Values in range that the trainer refuses.
        {"name": "set lr 1e300", "frame": '{"cmd":"set","run_id":"$RUN","lr":1e300}', "expect": "bad_arguments"},
        {"name": "set lr negative", "frame": '{"cmd":"set","run_id":"$RUN","lr":-0.1}', "expect": "bad_arguments"},
        {"name": "set lr as text", "frame": '{"cmd":"set","run_id":"$RUN","lr":"fast"}', "expect": "bad_arguments"},
        {"name": "set nothing", "frame": '{"cmd":"set","run_id":"$RUN"}', "expect": "bad_arguments"},
        {"name": "probe index -1", "frame": '{"cmd":"probe","run_id":"$RUN","probe":"feature_maps","index":-1}',
         "expect": "bad_arguments"},
        {"name": "probe of no kind", "frame": '{"cmd":"probe","run_id":"$RUN","probe":"x-ray"}', "expect": "bad_arguments"},
        {"name": "probe index as text", "frame": '{"cmd":"probe","run_id":"$RUN","probe":"feature_maps","index":"3"}',
         "expect": "bad_arguments"},
        {"name": "predict of the wrong size", "frame": '{"cmd":"predict","run_id":"$RUN","input":[1,2,3]}',
         "expect": "bad_arguments"},
        {"name": "predict of text", "frame": '{"cmd":"predict","run_id":"$RUN","input":"a digit"}', "expect": "bad_arguments"},
        {"name": "predict of an object", "frame": '{"cmd":"predict","run_id":"$RUN","input":{"x":1}}',
         "expect": "bad_arguments"},
        {"name": "speed as text", "frame": '{"cmd":"speed","run_id":"$RUN","steps_per_s":"max"}', "expect": "bad_arguments"},
        {"name": "views of no view", "frame": '{"cmd":"views","run_id":"$RUN","views":{"x-ray":{}}}', "expect": "bad_arguments"},
        {"name": "views not an object", "frame": '{"cmd":"views","run_id":"$RUN","views":["boundary"]}',
         "expect": "bad_arguments"},
        # Not JSON, not an object, not a command.
        {"name": "not JSON", "frame": "hello", "expect": "bad_json"},
        {"name": "cut-off JSON", "frame": '{"cmd":"ping"', "expect": "bad_json"},
        {"name": "empty frame", "frame": "", "expect": "bad_json"},
        {"name": "a JSON array", "frame": '["ping"]', "expect": "bad_command"},
        {"name": "a JSON string", "frame": '"ping"', "expect": "bad_command"},
        {"name": "JSON null", "frame": "null", "expect": "bad_command"},
        {"name": "unknown command", "frame": '{"cmd":"rm -rf"}', "expect": "unknown_command"},
        {"name": "command is an object", "frame": '{"cmd":{"$ne":null}}', "expect": "unknown_command"},
        {"name": "no command", "frame": '{"id":1}', "expect": "unknown_command"},
        {"name": "binary frame", "frame": '{"cmd":"ping"}', "binary": True, "expect": "bad_frame"},
        {"name": "frame over the size limit", "frame": '{"cmd":"ping"}', "pad": MAX_MESSAGE_BYTES, "expect": "too_large"},
        # Runs that are not there, or not ours.
        {"name": "run command without run_id", "frame": '{"cmd":"pause"}', "expect": "bad_arguments"},
        {"name": "run_id a number", "frame": '{"cmd":"stop","run_id":12}', "expect": "bad_arguments"},
        {"name": "run_id of no run", "frame": '{"cmd":"stop","run_id":"0000000000000000"}', "expect": "not_found"},
        {"name": "run_id with a path", "frame": '{"cmd":"subscribe","run_id":"../../etc/passwd"}', "expect": "not_found"},
        {"name": "start without an experiment", "frame": '{"cmd":"start"}', "expect": "bad_arguments"},
        {"name": "start with a text experiment", "frame": '{"cmd":"start","experiment":"mnist"}', "expect": "bad_arguments"},
        # A strange id is still echoed.
        {"name": "ping with an object id", "frame": '{"cmd":"ping","id":{"nested":[1,2,{"x":null}]}}', "expect": "pong"},
    ]
    for name, document, _ in ABSURD_EXPERIMENTS:
        if isinstance(document, dict):
            cases.append({"name": f"start: {name}", "frame": '{"cmd":"start","experiment":' + _json(document) + "}",
                          "expect": "invalid_experiment"})
    return cases


def rest_requests() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for name, document, path in ABSURD_EXPERIMENTS:
        cases.append({"name": f"validate: {name}", "method": "POST", "path": "/api/validate", "body": _json(document),
                      "expect": 200, "detail": path})
    cases += [
        {"name": "validate: body nested 20,000 deep", "method": "POST", "path": "/api/validate",
         "body": "[" * 20_000 + "]" * 20_000, "expect": 400, "detail": "parsing the body"},
        {"name": "validate: not JSON", "method": "POST", "path": "/api/validate", "body": "{data:", "expect": 422,
         "detail": "JSON decode error"},
        {"name": "schedule: steps of 5,000 digits", "method": "POST", "path": "/api/schedule/preview",
         "body": '{"train":{},"steps_per_epoch":1' + "0" * 5000 + ',"total_steps":10}', "expect": 400},
        {"name": "schedule: total_steps 1e999", "method": "POST", "path": "/api/schedule/preview",
         "body": '{"train":{},"steps_per_epoch":10,"total_steps":1e999}', "expect": 422, "detail": "total_steps"},
        {"name": "schedule: lr 1e999", "method": "POST", "path": "/api/schedule/preview",
         "body": '{"train":{"optimizer":{"kind":"sgd","lr":1e999}},"steps_per_epoch":10,"total_steps":10}',
         "expect": 422, "detail": "finite number"},
        {"name": "schedule: a billion steps", "method": "POST", "path": "/api/schedule/preview",
         "json": {"train": {}, "steps_per_epoch": 10, "total_steps": 10**9}, "expect": 422, "detail": "total_steps"},
        {"name": "preview: n of 30 digits", "method": "GET", "path": "/api/datasets/spiral/preview?n=" + "9" * 30,
         "expect": 422, "detail": "n"},
        {"name": "preview: a dataset path", "method": "GET", "path": "/api/datasets/..%2F..%2Fetc%2Fpasswd/preview",
         "expect": 404},
        {"name": "preview: an upload path", "method": "GET", "path": "/api/datasets/upload:..%2Fx/preview", "expect": 404},
        {"name": "preview: a bad upload id", "method": "GET", "path": "/api/datasets/upload:XYZ/preview", "expect": 404,
         "detail": "no such upload"},
        {"name": "preset with a path", "method": "GET", "path": "/api/presets/..%2F..%2Fpyproject", "expect": 404},
        {"name": "run id of 1,000 characters", "method": "GET", "path": "/api/runs/" + "a" * 1000, "expect": 404},
        {"name": "compare nothing", "method": "GET", "path": "/api/runs/compare?ids=,,,", "expect": 400},
        {"name": "compare 500 runs", "method": "GET", "path": "/api/runs/compare?ids=" + ",".join(["r"] * 500),
         "expect": 400},
        {"name": "export a run of no one", "method": "GET", "path": "/api/runs/0000/export?format=..%2F..%2Fx",
         "expect": 404},
        {"name": "weights: not safetensors", "method": "POST", "path": "/api/weights", "body": "PK\u0003\u0004 not weights",
         "content_type": "application/octet-stream", "expect": 400},
        {"name": "weights: empty", "method": "POST", "path": "/api/weights", "body": "",
         "content_type": "application/octet-stream", "expect": 400},
        {"name": "upload: not multipart", "method": "POST", "path": "/api/uploads", "json": {"file": "a.csv"}, "expect": 400},
    ]
    for filename, (_, detail) in UPLOADS.items():
        status = 413 if filename in TOO_LARGE_UPLOADS else 400
        cases.append({"name": f"upload: {filename}", "method": "POST", "path": "/api/uploads", "upload": filename,
                      "expect": status, "detail": detail})
    return cases


# ---------------------------------------------------------------------------
# Upload files
# ---------------------------------------------------------------------------


def _npz(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    arrays = arrays or {"x": np.linspace(0, 1, 40).reshape(20, 2), "y": np.arange(20) % 2}
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return _stable(buffer.getvalue())


# 1980-01-01 00:00 as a zip's DOS time and date: archives stamped with it are the same bytes every run.
ZIP_EPOCH = struct.pack("<HH", 0, (1980 - 1980) << 9 | 1 << 5 | 1)


def _stable(data: bytes) -> bytes:
    """``data`` (a zip) with every member's modification time set to ``ZIP_EPOCH``."""
    return _patch_headers(data, 10, 12, ZIP_EPOCH)


def _patch_headers(data: bytes, local_offset: int, central_offset: int, value: bytes) -> bytes:
    """Write ``value`` at the given offsets of every local and central zip header."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        at = out.find(signature)
        while at >= 0:
            out[at + offset : at + offset + len(value)] = value
            at = out.find(signature, at + 4)
    return bytes(out)


def _pickled_npz() -> bytes:
    """An .npz whose x is an object array: loading it would unpickle (run code)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        with archive.open("x.npy", "w") as member:
            np.lib.format.write_array(member, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        with archive.open("y.npy", "w") as member:
            np.lib.format.write_array(member, np.array([0, 1]))
    return _stable(buffer.getvalue())


def _lying_npz() -> bytes:
    """A deflated x.npy whose header claims a billion rows: the shape must be checked before reading."""
    buffer = io.BytesIO()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 2)})
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(1024))
        with archive.open("y.npy", "w") as member:
            np.lib.format.write_array(member, np.arange(10**6) % 2)
    return _stable(buffer.getvalue())


# file name -> (content, a piece of the 400's detail)
UPLOADS: dict[str, tuple[bytes, str]] = {
    "wrong_crc.npz": (_patch_headers(_npz(), 14, 16, struct.pack("<I", 0xDEADBEEF)), "is damaged: Bad CRC-32"),
    "wrong_crc_deflate.npz": (_patch_headers(_npz(True), 14, 16, struct.pack("<I", 0xDEADBEEF)), "is damaged"),
    "encrypted.npz": (_patch_headers(_npz(), 6, 8, b"\x01"), "is encrypted"),
    "lzma.npz": (_patch_headers(_npz(), 8, 10, struct.pack("<H", zipfile.ZIP_LZMA)), "compressed with zip method 14"),
    "cut_short.npz": (_npz(True)[:300], "is not a valid .npz archive"),
    "pickled.npz": (_pickled_npz(), "'x' holds Python objects (a pickle)"),
    "billion_rows.npz": (_lying_npz(), "has 1,000,000,000 examples; the limit is"),
    "string_labels.npz": (_npz(x=np.zeros((4, 2)), y=np.array(["a", "b", "a", "b"])), "not numeric"),
    "label_beyond_2_53.npz": (_npz(x=np.zeros((2, 2)), y=np.array([0, 2**64 - 1], dtype=np.uint64)), "out of range"),
    "label_1e300.csv": (b"x,y,label\n0.1,0.2,0\n0.3,0.4,1e300\n", "line 3: label 1e+300 is out of range"),
    "label_nan.csv": (b"0.1,0.2,0\n0.3,0.4,nan\n", "is not an integer"),
    "labels_mixed.csv": (b"a,b,label\n1,2,0\n3,4,cat\n", "is not a number, but 1 other labels are"),
    "feature_text.csv": (b"a,b,label\n1,two,0\n3,4,1\n", "line 2, column 2: 'two' is not a number"),
    "feature_inf.csv": (b"0.1,inf,0\n0.3,0.4,1\n", "contains NaN or infinity"),
    "ragged.csv": (b"1,2,0\n3,4,5,1\n", "line 2 has 4 values"),
    "not_utf8.csv": (b"1,2,0\n\xff\xfe,4,1\n", "is not UTF-8"),
    "nul_bytes.csv": (b"1,2,0\n3,\x00\x00,1\n", "is not a number"),
    "one_class.csv": (b"1,2,0\n3,4,0\n", "single class"),
    "header_only.csv": (b"a,b,label\n", "header but no rows"),
    "empty.csv": (b"", "the file is empty"),
    "program.exe": (b"MZ\x90\x00", "unsupported file type"),
}


# Uploads the store measures (from the .npy header) as over its limits before parsing: 413, not 400.
TOO_LARGE_UPLOADS = {"billion_rows.npz"}


def corpus_files() -> dict[str, bytes]:
    """Every corpus file, by path relative to corpus/."""
    files = {
        "ws_frames.jsonl": "".join(json.dumps(case) + "\n" for case in ws_frames()).encode(),
        "rest_requests.jsonl": "".join(json.dumps(case) + "\n" for case in rest_requests()).encode(),
    }
    files.update({f"uploads/{name}": content for name, (content, _) in UPLOADS.items()})
    return files


def main() -> int:
    for relative, content in corpus_files().items():
        path = CORPUS / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    stale = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file()} - set(corpus_files())
    for relative in stale:
        (CORPUS / relative).unlink()
    print(f"wrote {len(corpus_files())} files to {CORPUS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
