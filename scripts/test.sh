#!/usr/bin/env bash
# Set up .venv (if needed) with both backends and the dev tools, then lint and run the test suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -U pip
# the plugins under plugins/ (tasks: pair, multiclass, ner; MLflow tracking: mlflow) are separate distributions, installed like a third party's
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[torch,tensorflow,onnx,export,serve,tune,hub,dev]' -e plugins/pair -e plugins/multiclass -e plugins/ner -e plugins/mlflow
export TOKENIZERS_PARALLELISM=false TF_CPP_MIN_LOG_LEVEL=2
.venv/bin/ruff check .
# two workers, each test file whole on one of them (session fixtures are built once per worker)
.venv/bin/python -m pytest -n "${TL_TEST_WORKERS:-2}" --dist loadfile "$@"
