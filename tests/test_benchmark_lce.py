"""benchmarks.lce without LCE: the table's ratios and the missing-interpreter message (the
timing itself needs LCE's own Python, ESPRESSO_LCE_PYTHON)."""

import pytest

from benchmarks import lce
from espresso_cl import settings


def test_table_reports_per_image_times_and_ratios():
    row = {"network": "cnn", "batch": 16, "espresso_cl_s": 0.016, "same_class": "16/16",
           "lce_s": {"default": 0.32, "indirect_bgemm": 0.16, "reference_bconv": 0.64}}
    line = lce.table([row]).splitlines()[-1]
    assert line == "| cnn | 16 | 1.000 | 20.000 | 20.0 | 10.000 (indirect_bgemm) | 10.0 | 16/16 |"


def test_no_lce_python_says_which_variable(monkeypatch):
    monkeypatch.delenv(settings.LCE_PYTHON, raising=False)
    with pytest.raises(SystemExit, match="ESPRESSO_LCE_PYTHON"):
        lce.lce_python()
    monkeypatch.setenv(settings.LCE_PYTHON, " /opt/lce/bin/python ")
    assert lce.lce_python() == "/opt/lce/bin/python"
