"""The page's message types (frontend/src/protocol.ts) match PROTOCOL.md: same types, same top-level fields."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_TS = (ROOT / "frontend" / "src" / "protocol.ts").read_text()
PROTOCOL_MD = (ROOT / "server" / "PROTOCOL.md").read_text()
ENVELOPE = {"type", "run_id", "seq", "t", "request_id"}  # request_id: replies to a command


def documented() -> dict[str, set[str]]:
    return {
        m.group(1): set(json.loads(m.group(2))) - ENVELOPE
        for m in re.finditer(r"### `(\w+)`.*?```json\n(.*?)\n```", PROTOCOL_MD, re.S)
    }


def declared() -> dict[str, set[str]]:
    """Message type -> field names of its TypeScript interface (two-space indented members only)."""
    types = {}
    for m in re.finditer(r"export interface \w+ extends \w+ \{\n(.*?)\n\}", PROTOCOL_TS, re.S):
        body = m.group(1)
        kind = re.search(r'^  type: "(\w+)";', body, re.M)
        if kind:
            types[kind.group(1)] = set(re.findall(r"^  (\w+)\??:", body, re.M)) - ENVELOPE
    return types


def test_every_documented_message_has_a_typescript_type_with_the_same_fields():
    docs, ts = documented(), declared()
    assert set(docs) <= set(ts), f"no TypeScript type for {set(docs) - set(ts)}"
    for kind, fields in docs.items():
        assert ts[kind] == fields, f"{kind}: protocol.ts has {sorted(ts[kind] ^ fields)} differently from PROTOCOL.md"
