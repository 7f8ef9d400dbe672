"""Preset experiments: the JSON documents in ``models/`` (one classic network each)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from server.schemas import Experiment

# The repository's models/ folder, beside the package (installs are editable; see README).
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def list_presets(models_dir: Path = MODELS_DIR) -> list[dict[str, Any]]:
    """Every preset as ``{id, name, description, experiment}``, sorted by id; each validated."""
    presets = []
    for path in sorted(models_dir.glob("*.json")):
        experiment = Experiment.model_validate(json.loads(path.read_text(encoding="utf-8")))
        presets.append(
            {
                "id": path.stem,
                "name": experiment.name,
                "description": experiment.description,
                "experiment": experiment.model_dump(mode="json"),
            }
        )
    return presets


def get_preset(preset_id: str, models_dir: Path = MODELS_DIR) -> dict[str, Any] | None:
    """One preset by id (the file stem), or None."""
    return next((p for p in list_presets(models_dir) if p["id"] == preset_id), None)
