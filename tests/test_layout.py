"""The layout keeps showing the pipeline: imports only point down it (ucm -> quantize -> compile -> targets ->
bench), and no module of the five packages grows past 300 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PIPELINE = ("ucm", "quantize", "compile", "targets", "bench")


def _imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & set(PIPELINE)


@pytest.mark.parametrize("stage", PIPELINE)
def test_imports_point_down_the_pipeline(stage: str) -> None:
    later = set(PIPELINE[PIPELINE.index(stage) + 1:])
    for path in sorted((REPO / stage).rglob("*.py")):
        upward = _imported_packages(path) & later
        assert not upward, f"{path.relative_to(REPO)} imports {sorted(upward)}, a later stage"


def test_no_module_over_300_lines() -> None:
    long = {str(p.relative_to(REPO)): n for stage in PIPELINE for p in (REPO / stage).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 300}
    assert not long
