"""Write frontend/src/generated/schema.ts from the pydantic schema of server.schemas.Experiment.

The backend is the one source of truth for the document's shape (STYLE.md habit 11):
this dumps ``TypeAdapter(Experiment).json_schema()`` and hands it to
json-schema-to-typescript (scripts/json2ts.mjs). Run it after changing
server/schemas.py:  ``cd frontend && npm run gen-types``  (or ``python3 scripts/gen_types.py``).
``--check`` exits 1 when the committed file is stale.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FRONTEND = Path(__file__).resolve().parents[1]
ROOT = FRONTEND.parent
TARGET = FRONTEND / "src" / "generated" / "schema.ts"


def experiment_schema() -> dict:
    """The JSON schema of the whole Experiment document (validation mode: defaults are optional)."""
    sys.path.insert(0, str(ROOT))
    from pydantic import TypeAdapter

    from server.schemas import Experiment

    return TypeAdapter(Experiment).json_schema()


def render(schema: dict) -> str:
    """TypeScript declarations for ``schema`` via json-schema-to-typescript."""
    done = subprocess.run(
        ["node", str(FRONTEND / "scripts" / "json2ts.mjs")],
        input=json.dumps(schema),
        capture_output=True,
        text=True,
        cwd=FRONTEND,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"json2ts failed:\n{done.stderr}")
    return done.stdout


def main(argv: list[str]) -> int:
    text = render(experiment_schema())
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run `npm run gen-types` in frontend/", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
