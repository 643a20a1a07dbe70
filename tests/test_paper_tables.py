"""The papers' parameter/MAC tables, reproduced within the stated tolerances (rows in experiments/paper_tables.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import paper_tables  # noqa: E402

CHECKED = [r for r in paper_tables.ROWS if r.tol is not None]


@pytest.mark.parametrize("row", CHECKED, ids=lambda r: paper_tables.command(r).removeprefix("mgnas count "))
def test_paper_row_within_tolerance(row):
    result = paper_tables.measure(row, with_macs=row.macs_tol is not None)
    assert abs(result.params_err) <= row.tol, f"{result.params:,} vs paper {row.params:,.0f}"
    if row.macs_tol is not None:
        assert abs(result.macs_err) <= row.macs_tol, f"{result.macs:,} MACs vs paper {row.macs:,.0f}"


def test_readme_table_is_generated_not_typed():
    text = (Path(paper_tables.__file__).parent / "README.md").read_text()
    assert paper_tables.BEGIN in text and paper_tables.END in text
    for row in paper_tables.ROWS:
        assert paper_tables.command(row) in text, f"README table lacks {paper_tables.command(row)}; run --write"
