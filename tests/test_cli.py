"""The `crossling` front door."""

import subprocess
import sys

from crossling.cli import AREAS, main


def test_help_lists_every_area(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(area in out for area in AREAS)


def test_unknown_area_is_an_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown area" in capsys.readouterr().err


def test_user_errors_print_one_line_not_a_traceback(tmp_path):
    # `python -m crossling` reaches the same entry point as the console script.
    proc = subprocess.run(
        [sys.executable, "-m", "crossling", "model", "path", "--cache", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and str(tmp_path) in proc.stdout
    assert "Traceback" not in proc.stderr
