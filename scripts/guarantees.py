"""README's "Guarantees" table, generated from the fault suite's own results.

    .venv/bin/python scripts/guarantees.py            # run tests/faults (slow cases too), then render
    .venv/bin/python scripts/guarantees.py --render   # render from the committed results only

Every test in ``tests/faults/`` marked ``@pytest.mark.guarantee(fault=..., tl=..., kept=...)`` is one
row (its parametrized cases together: both backends, several seeds); pytest's ``--guarantees PATH``
(tests/conftest.py) writes each case's outcome to ``tests/faults/guarantees.json``, and this script
writes the table between the ``guarantees`` markers of README.md. ``tests/faults/test_fault_table.py``
checks that the README table is the rendering of that file and that every case in it passed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "tests" / "faults" / "guarantees.json"
README = ROOT / "README.md"
START, END = "<!-- guarantees:start -->", "<!-- guarantees:end -->"


def run_suite(results: Path) -> int:
    """The fault suite, slow cases included, writing ``results``."""
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "-m", "pytest", "tests/faults", "-m", "slow or not slow", "-q", "-p", "no:cacheprovider",
           "--ignore=tests/faults/test_fault_table.py",  # it checks this script's output
           f"--guarantees={results}"]
    return subprocess.call(cmd, cwd=ROOT, env=env)


def rows(results: list[dict]) -> list[dict]:
    """One row per guarantee (fault, what tl does, what is kept), in file then source order: the tests
    that show it and, per test, its cases (both backends, several seeds) with their outcomes."""
    merged: dict[tuple[str, str, str], dict] = {}
    for r in results:
        row = merged.setdefault((r["fault"], r["tl"], r["kept"]),
                                {"fault": r["fault"], "tl": r["tl"], "kept": r["kept"], "tests": {}})
        cases = row["tests"].setdefault(f"{Path(r['file']).name}::{r['function']}", {})
        case = r["params"] or "-"
        if cases.get(case) != "failed":  # a case fails if any of its phases failed
            cases[case] = r["outcome"]
    return list(merged.values())


def render(results: list[dict]) -> str:
    lines = ["| Fault | What tl does | What is kept | Shown by | Cases |", "|---|---|---|---|---|"]
    for row in rows(results):
        outcomes = [o for cases in row["tests"].values() for o in cases.values()]
        passed = outcomes.count("passed")
        status = f"{passed}/{len(outcomes)} passed"
        if passed < len(outcomes):
            status += f" ({', '.join(sorted({o for o in outcomes if o != 'passed'}))})"
        shown = []
        for test, cases in row["tests"].items():
            params = [c for c in cases if c != "-"]
            shown.append(f"`{test}`" + (f" [{', '.join(params)}]" if params else ""))
        lines.append(f"| {row['fault']} | {row['tl']} | {row['kept']} | {'; '.join(shown)} | {status} |")
    return "\n".join(lines)


def write_readme(table: str) -> None:
    text = README.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"README.md lacks the {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", action="store_true", help="only render README from the committed results")
    args = parser.parse_args()
    code = 0
    if not args.render:
        code = run_suite(RESULTS)
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    write_readme(render(results))
    print(f"README.md Guarantees: {len(rows(results))} rows from {len(results)} cases ({RESULTS.relative_to(ROOT)})")
    return code


if __name__ == "__main__":
    sys.exit(main())
