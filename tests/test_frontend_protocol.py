"""The page's protocol types (frontend/src/protocol.ts) and PROTOCOL.md are generated from server/messages.py.

They must be fresh (what frontend/scripts/gen_protocol.py writes now), the page must find every name
it imports from them, and the generated TypeScript must declare each documented message with the
fields of PROTOCOL.md's example. `npm run check` runs the same freshness check.
"""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from server import messages

ROOT = Path(__file__).resolve().parent.parent
FRONTEND_SRC = ROOT / "frontend" / "src"
PROTOCOL_TS = FRONTEND_SRC / "protocol.ts"
PROTOCOL_MD = ROOT / "server" / "PROTOCOL.md"
# Envelope fields (in every message's interface through `extends`), left out of the per-type comparison.
ENVELOPE = {"type", "run_id", "seq", "t", "request_id", "rate_hz"}


@pytest.fixture(scope="module")
def gen_protocol():
    spec = importlib.util.spec_from_file_location("gen_protocol", ROOT / "frontend" / "scripts" / "gen_protocol.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_protocol_ts_and_protocol_md_are_what_the_models_generate(gen_protocol):
    for path, text in gen_protocol.outputs().items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} is stale: run `npm run gen-types` in frontend/"


def exported_names() -> set[str]:
    """Names protocol.ts exports: its own declarations and its re-exports."""
    text = PROTOCOL_TS.read_text()
    names = set(re.findall(r"^export (?:interface|type) (\w+)", text, re.M))
    for group in re.findall(r"^export type \{([^}]*)\} from", text, re.M):
        names |= {name.strip() for name in group.split(",") if name.strip()}
    return names


def imported_from_protocol() -> dict[str, set[str]]:
    """Name -> the page's files that import it from ./protocol or ../protocol."""
    imports: dict[str, set[str]] = {}
    pattern = re.compile(r'import\s+(?:type\s+)?\{([^}]*)\}\s+from\s+"(?:\.\./)*\.?/?protocol"', re.S)
    for path in FRONTEND_SRC.rglob("*.ts"):
        if path == PROTOCOL_TS:
            continue
        for group in pattern.findall(path.read_text()):
            for name in group.split(","):
                name = name.strip().removeprefix("type ").split(" as ")[0].strip()
                if name:
                    imports.setdefault(name, set()).add(str(path.relative_to(FRONTEND_SRC)))
    return imports


def test_every_name_the_page_imports_from_protocol_exists():
    imports = imported_from_protocol()
    assert {"ServerMessage", "ClientCommand", "Image"} <= set(imports), "the import scan found too little"
    missing = {name: sorted(files) for name, files in imports.items() if name not in exported_names()}
    assert not missing, f"the page imports names protocol.ts does not export: {missing}"


def test_the_names_the_page_relies_on_are_exported():
    expected = {"ServerMessage", "MessageType", "MessageOf", "ClientCommand", "CommandName", "ProbeKind", "LiveViewName",
                "RunState", "StopReason", "DatasetKind", "WireNumber", "Shape", "Image", "LayerInfo", "NetworkSummary",
                "Envelope", "DirectEnvelope", "ValidationError", "Health", "ValidateResult", "PresetInfo", "MetricPoint",
                "RunInfo"}
    assert expected <= exported_names(), sorted(expected - exported_names())


def test_page_type_overrides_name_real_fields(gen_protocol):
    """Every narrowing the page still needs points at a field that exists (a stale entry would hide nothing)."""
    models = {gen_protocol.ts_name(cls): cls for cls in vars(messages).values()
              if isinstance(cls, type) and issubclass(cls, messages.WireModel)}
    for model_name, field in gen_protocol.PAGE_TYPES:
        assert model_name in models, f"PAGE_TYPES names no model {model_name!r}"
        assert field in models[model_name].model_fields, f"PAGE_TYPES: {model_name} has no field {field!r}"


def documented() -> dict[str, set[str]]:
    return {
        m.group(1): set(json.loads(m.group(2))) - ENVELOPE
        for m in re.finditer(r"### `(\w+)`.*?```json\n(.*?)\n```", PROTOCOL_MD.read_text(), re.S)
    }


def declared() -> dict[str, tuple[set[str], set[str]]]:
    """Message type -> (all field names, required field names) of its TypeScript interface (two-space members)."""
    types = {}
    for m in re.finditer(r"export interface \w+ extends \w+ \{\n(.*?)\n\}", PROTOCOL_TS.read_text(), re.S):
        body = m.group(1)
        kind = re.search(r'^  type: "(\w+)";', body, re.M)
        if kind:
            members = re.findall(r"^  (\w+)(\??):", body, re.M)
            types[kind.group(1)] = ({n for n, _ in members} - ENVELOPE, {n for n, opt in members if not opt} - ENVELOPE)
    return types


def test_every_documented_message_has_a_typescript_type_that_fits_its_example():
    """The example shows every field the type always has, and no field the type lacks."""
    docs, ts = documented(), declared()
    assert len(docs) >= 20 and set(docs) <= set(ts), f"no TypeScript type for {set(docs) - set(ts)}"
    for kind, fields in docs.items():
        every, required = ts[kind]
        assert fields <= every, f"{kind}: PROTOCOL.md's example has {sorted(fields - every)}, protocol.ts does not"
        assert required <= fields, f"{kind}: PROTOCOL.md's example lacks {sorted(required - fields)}"
