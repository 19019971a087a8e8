"""Every experiment of the tour, in quick mode, must pass its stated checks; the
command writes the report."""

import json
import os

import pytest

from wonderland.cli import main
from wonderland.experiments import EXPERIMENTS, available, run_experiment


# quick chapters that take longer than ~20 s on a 2-core machine
_LONG_QUICK = {"ch9", "ch11"}       # ch9: 21–27 s, ch11: 27–32 s measured


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("chapter", [pytest.param(c, marks=pytest.mark.slow) if c in _LONG_QUICK
                                     else c for c in available()])
def test_experiment_meets_its_checks(chapter, tmp_path):
    result = run_experiment(chapter, str(tmp_path), quick=True)
    failed = [f"{c.description}: {c.value} {c.op} {c.threshold}" for c in result.checks if not c.passed]
    assert not failed, f"{chapter}: {failed}"
    assert result.checks and result.summary and result.metrics
    for fig in result.figures:
        assert os.path.getsize(tmp_path / fig.path) > 1000


@pytest.mark.slow
@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("chapter", ["ch7", "ch8", "ch9"])
def test_full_size_experiment_meets_its_checks(chapter, tmp_path):
    """What `wonderland tour` shows by default: the chapters whose full settings differ
    most from quick mode (more data, epochs and seeds), at full size."""
    result = run_experiment(chapter, str(tmp_path), quick=False)
    failed = [f"{c.description}: {c.value} {c.op} {c.threshold}" for c in result.checks if not c.passed]
    assert not failed, f"{chapter}: {failed}"


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


# ----------------------------------------------------------------------------- clear errors
def test_short_or_binary_text_fails_up_front(tmp_path, capsys):
    out = tmp_path / "out"
    short = tmp_path / "short.txt"
    short.write_text("hello world")
    assert main(["tour", "ch8", "--quick", "--text", str(short), "--out", str(out)]) == 2
    assert "--text: " in capsys.readouterr().err
    binary = tmp_path / "data.bin"
    binary.write_bytes(bytes(range(32)) * 200)
    assert main(["tour", "ch8", "--quick", "--text", str(binary), "--out", str(out)]) == 2
    assert "does not look like text" in capsys.readouterr().err
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 ".encode("latin-1") * 1000)
    assert main(["tour", "ch8", "--quick", "--text", str(latin), "--out", str(out)]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err
    assert not out.exists()                                  # nothing ran


def test_short_text_message_names_the_minimum(tmp_path):
    from wonderland.experiments.ch08_sequences import MIN_TEXT_CHARS, check_text
    short = tmp_path / "short.txt"
    short.write_text("x" * 100)
    with pytest.raises(ValueError, match=f"has 100 characters; .* at least {MIN_TEXT_CHARS:,}"):
        check_text(short)


def test_unusable_output_folder_has_its_own_exit_status(tmp_path, capsys):
    a_file = tmp_path / "report"
    a_file.write_text("x")
    assert main(["tour", "appB", "--quick", "--no-progress", "--out", str(a_file)]) == 3
    assert f"--out: {a_file} is a file, not a folder" in capsys.readouterr().err
    assert main(["tour", "appB", "--quick", "--no-progress", "--out", str(a_file / "sub")]) == 3
    assert "--out: cannot write to" in capsys.readouterr().err


def test_help_lists_only_chapters_that_exist(capsys):
    with pytest.raises(SystemExit):
        main(["tour", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ", ".join(available()) in text
    import re
    listed = set(re.findall(r"\b(ch\d+|app[A-Z])\b", text))
    assert listed == set(available())                     # no chapter that does not exist
    assert "3 the output folder cannot be written" in text


def test_summary_shows_each_threshold_beside_its_value(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["tour", "appB", "--out", str(out), "--quick", "--no-progress"]) == 0
    text = capsys.readouterr().out
    data = json.loads((out / "results.json").read_text())
    for c in data["chapters"]["appB"]["checks"]:
        line = next(x for x in text.splitlines() if c["description"] in x)
        assert f" {c['op']} {c['threshold']:.4g}" in line and line.strip().startswith("ok")


# ----------------------------------------------------------------------------- partial results
def _fake(chapter, run):
    from wonderland.experiments import Experiment
    return Experiment(chapter, f"fake {chapter}", run)


def _passing(ctx):
    from wonderland.experiments import Check, Result
    ctx.status("halfway through")
    return Result({"x": 1.0}, "fine", [Check("x is one", 1.0, 1.0, ">=")])


def test_report_is_written_after_each_chapter_and_kept_on_a_crash(tmp_path, monkeypatch):
    from wonderland.experiments import run_tour

    def crash(ctx):
        raise RuntimeError("boom")

    monkeypatch.setitem(EXPERIMENTS, "ch2", _fake("ch2", _passing))
    monkeypatch.setitem(EXPERIMENTS, "ch3", _fake("ch3", crash))
    with pytest.raises(RuntimeError, match="boom"):
        run_tour(["ch2", "ch3"], out_dir=str(tmp_path), progress=False, echo=None)
    data = json.loads((tmp_path / "results.json").read_text())
    assert list(data["chapters"]) == ["ch2"] and data["status"] == "failed"
    assert data["pending"] == ["ch3"]
    assert "stopped by an error" in (tmp_path / "report.html").read_text()


def test_interrupted_tour_keeps_finished_chapters(tmp_path, monkeypatch, capsys):
    def interrupt(ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(EXPERIMENTS, "ch2", _fake("ch2", _passing))
    monkeypatch.setitem(EXPERIMENTS, "ch3", _fake("ch3", interrupt))
    assert main(["tour", "ch2", "ch3", "--out", str(tmp_path), "--no-progress"]) == 130
    data = json.loads((tmp_path / "results.json").read_text())
    assert list(data["chapters"]) == ["ch2"] and data["status"] == "interrupted"
    assert "interrupted" in (tmp_path / "report.html").read_text()


def test_progress_bar_starts_each_chapter_without_the_last_status(tmp_path, monkeypatch):
    import tqdm.auto
    from wonderland.experiments import run_tour

    seen = []

    class Bar:
        def __init__(self, *args, **kwargs):
            self.postfix = ""

        def set_postfix_str(self, text, refresh=True):
            self.postfix = text

        def set_description(self, text):
            seen.append((text, self.postfix))

        def update(self, n=1):
            pass

        def close(self):
            pass

        @staticmethod
        def write(line):
            pass

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    monkeypatch.setitem(EXPERIMENTS, "ch2", _fake("ch2", _passing))
    monkeypatch.setitem(EXPERIMENTS, "ch3", _fake("ch3", _passing))
    run_tour(["ch2", "ch3"], out_dir=str(tmp_path), progress=True)
    assert seen == [("ch2: fake ch2", ""), ("ch3: fake ch3", "")]


def test_numerical_warnings_are_not_hidden(tmp_path, monkeypatch):
    import numpy as np

    def noisy(ctx):
        np.log(np.zeros(1))
        return _passing(ctx)

    monkeypatch.setitem(EXPERIMENTS, "ch2", _fake("ch2", noisy))
    with pytest.warns(RuntimeWarning, match="divide by zero"):
        run_experiment("ch2", str(tmp_path))


def test_masking_check_fails_when_the_mask_is_ignored(monkeypatch):
    """The chapter 8 check must be able to fail: with a pooling that ignores the mask in
    both arms, the two errors are alike and the ratio stays far below its threshold."""
    import wonderland as wl
    from wonderland.experiments import ch08_sequences
    from wonderland.experiments.base import Context

    monkeypatch.setattr(wl.nn.functional, "masked_global_avg_pool", lambda h, mask: h.mean(1))
    (mse_masked, _), (mse_unmasked, _) = ch08_sequences._variable_length(Context("", quick=True))
    assert mse_unmasked / mse_masked < 1.5


# ----------------------------------------------------------------------------- cost checks
# The tour's claims about cost compare counts, which do not move with the machine's load.
# Each must be able to fail: with the cheaper path swapped for one that does the work of
# the other, the counted ratio falls below the check's threshold.
def test_forward_mode_count_check_fails_when_the_passes_are_one(monkeypatch):
    import wonderland as wl
    from wonderland.experiments import ch06_autodiff
    from wonderland.experiments.base import Context

    # one vmapped pass instead of one JVP per input: the count no longer grows with n
    monkeypatch.setattr(ch06_autodiff, "_forward_passes", lambda f, x: wl.jacfwd(f)(x))
    sizes, _, _, counts_in, counts_out = ch06_autodiff._cost(Context("", quick=True))
    assert counts_in["fwd"][-1] / counts_in["rev"][-1] < sizes[-1] / 4
    assert counts_out["rev"][-1] / counts_out["fwd"][-1] >= sizes[-1] / 4   # untouched side


@pytest.mark.slow                   # recomputes every prefix of up to 256 tokens: ~8 s
def test_kv_cache_count_check_fails_when_the_cache_is_not_used(monkeypatch):
    from wonderland.experiments import ch11_transformers_in_practice as ch11
    from wonderland.experiments.base import Context
    from wonderland.models import GPT

    generate = GPT.generate
    monkeypatch.setattr(GPT, "generate", lambda self, *a, use_cache=True, **k:
                        generate(self, *a, use_cache=False, **k))
    rows = ch11.kv_cache_cost(Context("", quick=True))
    assert rows[-1]["recompute_macs"] / rows[-1]["cache_macs"] < rows[-1]["tokens"] / 4


def test_linear_attention_count_check_fails_for_a_quadratic_linear_attention(monkeypatch):
    import wonderland as wl
    from wonderland.experiments import ch11_transformers_in_practice as ch11
    from wonderland.experiments.base import Context

    def quadratic(q, k, v):          # the same outputs, through the L × L matrix of weights
        fq, fk = wl.nn.functional.elu(q) + 1.0, wl.nn.functional.elu(k) + 1.0
        w = wl.matmul(fq, fk.swapaxes(-1, -2))
        return wl.matmul(w, v) / (w.sum(-1, keepdims=True) + 1e-6)

    monkeypatch.setattr(wl.nn.functional, "linear_attention", quadratic)
    rows = ch11.linear_vs_softmax(Context("", quick=True))
    lengths = [r["length"] for r in rows]
    slope = ch11._slope(lengths, [r["softmax_macs"] for r in rows]) - \
        ch11._slope(lengths, [r["linear_macs"] for r in rows])
    assert slope < 0.8


def test_s4d_count_check_fails_when_the_convolution_steps(monkeypatch):
    from wonderland import nn
    from wonderland.experiments import ch13_recurrent
    from wonderland.experiments.base import Context

    forward = nn.S4D.forward
    monkeypatch.setattr(nn.S4D, "forward", lambda self, x, mode=None, method="sequential":
                        forward(self, x, "recurrent" if mode == "conv" else mode, method))
    lengths, _, counts = ch13_recurrent._cost(Context("", quick=True))
    ratio = counts["recurrent (step loop)"][-1] / counts["convolution (FFT)"][-1]
    assert ratio < lengths[-1] / 16
