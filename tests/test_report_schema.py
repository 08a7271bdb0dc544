import json
from pathlib import Path

from documents.report import SCHEMA_PATH, json_schema

ROOT = Path(__file__).resolve().parents[1]


def test_schema_file_is_current():
    """The committed schema must be what the models generate (python -m documents.report)."""
    committed = json.loads((ROOT / SCHEMA_PATH).read_text())
    assert committed == json_schema()
