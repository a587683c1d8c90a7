"""README's Guarantees table is the rendering of the fault suite's recorded results, every recorded
case passed, and every guarantee test of tests/faults/ is in them (scripts/guarantees.py)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("guarantees_script", ROOT / "scripts" / "guarantees.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_table_is_generated_from_the_suite_results():
    script = load_script()
    results = json.loads(script.RESULTS.read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split(script.START, 1)[1].split(script.END, 1)[0].strip()
    assert block == script.render(results), "README's table is stale: run scripts/guarantees.py"
    failed = [r["test"] for r in results if r["outcome"] == "failed"]
    assert not failed, failed
    recorded = {(Path(r["file"]).name, r["function"]) for r in results}
    marked = set()
    for path in sorted((ROOT / "tests" / "faults").glob("test_*.py")):
        source = path.read_text(encoding="utf-8")
        # a marker on the function or on one of its parameters (pytest.param(..., marks=...))
        for match in re.finditer(r"pytest\.mark\.guarantee\(.*?\ndef (test_\w+)", source, re.S):
            marked.add((path.name, match.group(1)))
    assert marked, "no guarantee tests found"
    assert marked == recorded, ("run scripts/guarantees.py", sorted(marked ^ recorded))
