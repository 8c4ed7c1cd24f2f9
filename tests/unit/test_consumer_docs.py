"""The outage topic's consumer guide (docs/consumers.md) shows records that are valid, and code that runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
from referencing import Registry, Resource

from schemas import CorrelatedIncident, OutageEvent, decode
from schemas.jsonschema import JSON_DIR

DOC = Path(__file__).resolve().parents[2] / "docs" / "consumers.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_every_example_record_validates_against_the_committed_schemas_and_decodes() -> None:
    resources = [Resource.from_contents(json.loads(p.read_text())) for p in JSON_DIR.glob("*.schema.json")]
    registry = Registry().with_resources((r.contents["$id"], r) for r in resources)
    examples = blocks("json")
    records = []
    for text in examples:
        data = json.loads(text)
        schema = json.loads((JSON_DIR / f"{data['type']}.v{data['schema_version']}.schema.json").read_text())
        jsonschema.Draft202012Validator(schema, registry=registry).validate(data)
        records.append(decode(text))
    states = {r.state.value for r in records if isinstance(r, OutageEvent)}
    assert states == {"suspected", "open", "degraded", "resolved"}, "one example of each state"
    assert any(isinstance(r, CorrelatedIncident) for r in records)


def test_the_python_consumer_is_valid_python_of_about_fifteen_lines() -> None:
    (code,) = blocks("python")
    compile(code, "consumer.py", "exec")
    assert len(code.strip().splitlines()) <= 16
