"""Every experiment of the tour, in quick mode, must pass its stated checks; the
command writes the report."""

import json
import os

import pytest

from wonderland.cli import main
from wonderland.experiments import EXPERIMENTS, available, run_experiment


@pytest.mark.parametrize("chapter", available())
def test_experiment_meets_its_checks(chapter, tmp_path):
    result = run_experiment(chapter, str(tmp_path), quick=True)
    failed = [f"{c.description}: {c.value} {c.op} {c.threshold}" for c in result.checks if not c.passed]
    assert not failed, f"{chapter}: {failed}"
    assert result.checks and result.summary and result.metrics
    for fig in result.figures:
        assert os.path.getsize(tmp_path / fig.path) > 1000


def test_tour_command_writes_report_and_results(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["tour", "ch2", "appB", "--out", str(out), "--quick", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "ch2" in text and "appB" in text and "report.html" in text
    html = (out / "report.html").read_text()
    assert "Gradients and gradient descent" in html and "figures/ch2-descent.png" in html
    data = json.loads((out / "results.json").read_text())
    assert set(data["chapters"]) == {"ch2", "appB"}
    assert data["chapters"]["appB"]["passed"] is True
    assert all(os.path.exists(out / f) for f in data["chapters"]["appB"]["figures"])


def test_tour_command_rejects_unknown_chapters(capsys):
    assert main(["tour", "ch99"]) == 2
    assert "unknown chapter(s) ch99" in capsys.readouterr().err


def test_tour_list(capsys):
    assert main(["tour", "--list"]) == 0
    out = capsys.readouterr().out
    for ch in EXPERIMENTS:
        assert ch in out
