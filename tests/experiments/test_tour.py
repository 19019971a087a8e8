"""Every experiment of the tour, in quick mode, must pass its stated checks; the
command writes the report."""

import json
import os
import pathlib
import re
import warnings

import pytest

from wonderland.cli import main
from wonderland.experiments import EXPERIMENTS, available, run_experiment


# quick chapters that take longer than ~20 s on a 2-core machine
_LONG_QUICK = {"ch9", "ch11"}       # ch9: 21–27 s, ch11: 27–32 s measured
_CHAPTERS = [pytest.param(c, marks=pytest.mark.slow) if c in _LONG_QUICK else c
             for c in available()]

# one quick run per chapter for the whole session: its checks, and the problems that
# figcheck finds in each figure it draws (inspected before the figure is closed)
_QUICK_RUNS = {}


def _quick_run(chapter, tmp_path_factory):
    if chapter not in _QUICK_RUNS:
        from wonderland.experiments.figcheck import figure_problems

        out = tmp_path_factory.mktemp(f"quick-{chapter}")
        problems = {}

        def inspect(fig, caption, path):
            problems[path] = figure_problems(fig, caption)

        # a numerical warning fails the run, whichever test happens to start it
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            result = run_experiment(chapter, str(out), quick=True, inspect=inspect)
        _QUICK_RUNS[chapter] = (out, result, problems)
    return _QUICK_RUNS[chapter]


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("chapter", _CHAPTERS)
def test_experiment_meets_its_checks(chapter, tmp_path_factory):
    out, result, _ = _quick_run(chapter, tmp_path_factory)
    failed = [f"{c.description}: {c.value} {c.op} {c.threshold}" for c in result.checks if not c.passed]
    assert not failed, f"{chapter}: {failed}"
    assert result.checks and result.summary and result.metrics
    for fig in result.figures:
        assert os.path.getsize(out / fig.path) > 1000


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("chapter", _CHAPTERS)
def test_every_figure_is_labelled_legible_and_explained(chapter, tmp_path_factory):
    """Every axis has a label (or is an image with a colour bar), no two tick labels
    overlap, and every line, set of points or bars is in a legend or named by the
    caption (see wonderland/experiments/figcheck.py)."""
    _, result, problems = _quick_run(chapter, tmp_path_factory)
    assert set(problems) == {f.path for f in result.figures}       # every figure inspected
    found = [f"{path}: {p}" for path, ps in problems.items() for p in ps]
    assert not found, "\n".join(found)


def _seed_table():
    """``(chapter, check, quick-mode threshold)`` for each row of docs/tour.md's table of
    the checks measured over tour seeds 0–4."""
    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "tour.md").read_text()
    text = text.split("## Thresholds from five seeds", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.fullmatch(r"ch\d+|app[A-Z]", cells[0]):
            rows.append((cells[0], cells[1], cells[3]))
    return rows


def _shape(description):
    """A check's text with its numbers blanked (sizes and counts differ in quick mode)."""
    return re.sub(r"\d+(?:\.\d+)?", "#", description.lower())


def test_the_seed_table_lists_the_checks_of_the_chapters():
    rows = _seed_table()
    assert len(rows) > 50 and {ch for ch, _, _ in rows} <= set(available())


@pytest.mark.parametrize("chapter", _CHAPTERS)
def test_every_check_that_depends_on_the_seed_states_its_spread(chapter, tmp_path_factory):
    """The checks measured over seeds 0–4 (docs/tour.md's table) carry their spread and
    rule in their note, and every check whose note gives a spread is in the table."""
    _, result, _ = _quick_run(chapter, tmp_path_factory)
    rows = [_shape(check) for ch, check, quick in _seed_table()
            if ch == chapter and quick != "not checked"]
    for row in rows:
        matching = [c for c in result.checks if _shape(c.description).startswith(row)]
        assert matching, f"{chapter}: no check reads {row!r}"
        for c in matching:
            assert "seeds 0–4 gave" in c.note, f"{chapter}: {c.description!r} has no spread"
    unlisted = [c.description for c in result.checks if "seeds 0–4" in c.note
                and not any(_shape(c.description).startswith(row) for row in rows)]
    assert not unlisted, f"{chapter}: spreads not in docs/tour.md's table: {unlisted}"


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
    ratio = (counts[ch13_recurrent.STEP_LOOP][-1]
             / counts[ch13_recurrent.FFT_CONVOLUTION][-1])
    assert ratio < lengths[-1] / 16


# ----------------------------------------------------------------------------- figure checks
def test_figcheck_finds_missing_labels_overlapping_ticks_and_unexplained_marks():
    """The figure checks themselves: each kind of problem is found on a figure that has
    it, and a figure without problems passes."""
    from wonderland.experiments.figcheck import figure_problems
    from wonderland.experiments.plotting import explained, plain_ticks, plt

    fig = plt.figure(figsize=(3, 2))
    ax = fig.add_subplot(111)
    ax.plot([1, 2, 3], [1, 4, 9])                              # no label, no legend
    ax.set_xticks([1, 1.02, 1.04], ["first", "second", "third"])   # crowded
    problems = figure_problems(fig, "a caption")
    plt.close(fig)
    assert any("no x label" in p for p in problems)
    assert any("no y label" in p for p in problems)
    assert any("overlap" in p for p in problems)
    assert any("Line2D is in no legend" in p for p in problems)

    fig = plt.figure(figsize=(4, 3))
    ax = fig.add_subplot(111)
    ax.loglog([32, 64, 128, 256], [1, 2, 4, 8], "o-", label="measured")
    explained(ax.plot([32, 256], [1, 8], "--"), "dashed")
    plain_ticks(ax, [32, 64, 128, 256])
    ax.set_xlabel("length")
    ax.set_ylabel("cost")
    ax.legend(loc="upper left")
    assert figure_problems(fig, "Dashed: a guide.") == []
    assert any("in no legend" in p for p in figure_problems(fig, "no word for it"))
    plt.close(fig)

    fig = plt.figure(figsize=(3, 3))
    ax = fig.add_subplot(111)
    ax.imshow([[0, 1], [1, 0]])
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    assert any("image without a colour bar" in p for p in figure_problems(fig, ""))
    fig.colorbar(ax.images[0], ax=ax, label="weight")
    assert figure_problems(fig, "") == []
    plt.close(fig)


def test_figcheck_finds_a_legend_over_bars():
    from wonderland.experiments.figcheck import figure_problems
    from wonderland.experiments.plotting import plt

    fig = plt.figure(figsize=(3, 2))
    ax = fig.add_subplot(111)
    ax.bar([0, 1], [1.0, 1.0], label="clean")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("model")
    ax.set_ylabel("accuracy")
    ax.legend(loc="center")
    assert any("legend covers a bar" in p for p in figure_problems(fig, ""))
    plt.close(fig)


# ----------------------------------------------------------------------------- results.json
def _numpy_checks(ctx):
    import numpy as np
    from wonderland.experiments import Check, Result
    return Result({"accuracy": np.float32(0.75), "count": np.int64(3), "ok": np.bool_(True),
                   "curve": np.arange(3.0), "rows": [{"n": np.int64(1), "loss": np.float64(0.5)}]},
                  "numpy values throughout",
                  [Check("a NumPy value against a float", np.float64(0.8), 0.5),
                   Check("a NumPy int against an int", np.int64(2), 3, "<"),
                   ctx.check("a quick-mode threshold", np.float32(0.7), 0.9, 0.6)])


def test_results_json_has_json_types(tmp_path, monkeypatch):
    monkeypatch.setitem(EXPERIMENTS, "ch2", _fake("ch2", _numpy_checks))
    assert main(["tour", "ch2", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    chapter = data["chapters"]["ch2"]
    assert chapter["passed"] is True
    for c in chapter["checks"]:
        assert c["passed"] is True
        for key in ("value", "threshold"):
            assert type(c[key]) in (int, float), (key, c[key])
    metrics = chapter["metrics"]
    assert metrics["count"] == 3 and type(metrics["count"]) is int
    assert metrics["ok"] is True and metrics["curve"] == [0.0, 1.0, 2.0]
    assert metrics["rows"] == [{"n": 1, "loss": 0.5}]


def test_a_full_tour_writes_booleans_for_every_check(tmp_path):
    """The chapters whose comparisons of NumPy numbers used to come out as 1.0."""
    assert main(["tour", "ch2", "ch6", "appB", "--quick", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    for chapter in data["chapters"].values():
        assert type(chapter["passed"]) is bool
        assert all(type(c["passed"]) is bool for c in chapter["checks"])


# ----------------------------------------------------------------------------- the report
def test_quick_thresholds_are_named_in_the_report_and_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(EXPERIMENTS, "ch2", _fake("ch2", _numpy_checks))
    assert main(["tour", "ch2", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if "a quick-mode threshold" in x)
    assert ">= 0.6 (quick-mode threshold; a full run checks >= 0.9)" in line
    html = (tmp_path / "report.html").read_text()
    assert "quick-mode threshold; a full run checks &gt;= 0.9" in html
    data = json.loads((tmp_path / "results.json").read_text())
    check = data["chapters"]["ch2"]["checks"][2]
    assert check["threshold"] == 0.6 and "full run checks >= 0.9" in check["note"]
    from wonderland.experiments.base import Context
    full = Context("", quick=False).check("x", 1.0, 0.9, 0.6)
    assert full.threshold == 0.9 and full.note == ""


def test_report_has_a_verdict_banner_and_metric_tables(tmp_path, monkeypatch):
    from wonderland.experiments import Check, Result, run_tour

    def failing(ctx):
        return Result({"x": 1.0}, "not fine", [Check("x is two", 1.0, 2.0, ">=")])

    monkeypatch.setitem(EXPERIMENTS, "ch2", _fake("ch2", _numpy_checks))
    run_tour(["ch2"], out_dir=str(tmp_path), quick=True, progress=False, echo=None)
    html = (tmp_path / "report.html").read_text()
    assert "All 3 checks passed in 1 chapter(s)" in html
    assert "{'" not in html and "[{" not in html                     # no raw Python text
    assert "<th>n</th><th>loss</th>" in html                          # rows as a table
    monkeypatch.setitem(EXPERIMENTS, "ch3", _fake("ch3", failing))
    run_tour(["ch2", "ch3"], out_dir=str(tmp_path / "b"), quick=True, progress=False, echo=None)
    html = (tmp_path / "b" / "report.html").read_text()
    assert "1 of 4 checks failed, in ch3" in html


def test_info_and_the_report_list_every_blas_loaded(tmp_path, monkeypatch, capsys):
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info

    blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    for pool in blas:
        assert pool["version"] in text and pool["filepath"] in text
    monkeypatch.setitem(EXPERIMENTS, "ch2", _fake("ch2", _passing))
    assert main(["tour", "ch2", "--out", str(tmp_path), "--no-progress"]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    listed = data["environment"]["blas_libraries"]
    assert sorted(b["path"] for b in listed) == sorted(p["filepath"] for p in blas)
    html = (tmp_path / "report.html").read_text()
    for pool in blas:
        assert pool["version"] in html


# ----------------------------------------------------------------------------- output folders
def _drawing(ctx):
    from wonderland.experiments import Check, Result
    from wonderland.experiments.plotting import explained

    fig = ctx.figure("only", "a figure")
    ax = fig.add_subplot(111)
    explained(ax.plot([0, 1], [0, 1]), "figure")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ctx.save(fig)
    return Result({"x": 1.0}, "fine", [Check("x is one", 1.0, 1.0, ">=")])


def test_quick_runs_go_to_their_own_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(EXPERIMENTS, "ch2", _fake("ch2", _drawing))
    assert main(["tour", "ch2", "--no-progress"]) == 0
    assert main(["tour", "ch2", "--quick", "--no-progress"]) == 0
    assert json.loads((tmp_path / "wonderland-out" / "results.json").read_text())["quick"] is False
    quick = json.loads((tmp_path / "wonderland-out" / "quick" / "results.json").read_text())
    assert quick["quick"] is True
    assert "wonderland-out/quick/report.html" in capsys.readouterr().out


def test_a_partial_or_quick_run_does_not_replace_a_complete_one(tmp_path, monkeypatch, capsys):
    for ch in ("ch2", "ch3"):
        monkeypatch.setitem(EXPERIMENTS, ch, _fake(ch, _drawing))
    out = tmp_path / "out"
    assert main(["tour", "ch2", "ch3", "--out", str(out), "--no-progress"]) == 0
    before = (out / "results.json").read_text()
    capsys.readouterr()
    assert main(["tour", "ch3", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds a full run of 2 chapter(s), complete; this run leaves out ch2" in err
    assert "--force" in err
    assert main(["tour", "ch2", "ch3", "--quick", "--out", str(out), "--no-progress"]) == 2
    assert "this quick run would replace it" in capsys.readouterr().err
    assert (out / "results.json").read_text() == before                # untouched
    assert main(["tour", "ch2", "ch3", "--out", str(out), "--no-progress"]) == 0   # a full redo
    assert main(["tour", "ch3", "--out", str(out), "--no-progress", "--force"]) == 0
    data = json.loads((out / "results.json").read_text())
    assert list(data["chapters"]) == ["ch3"]
    # ch2's figure belonged to the report that was replaced: it is gone, ch3's is fresh
    assert sorted(os.listdir(out / "figures")) == ["ch3-only.png"]


def test_a_rerun_chapter_loses_its_stale_figures(tmp_path, monkeypatch):
    from wonderland.experiments import run_tour

    monkeypatch.setitem(EXPERIMENTS, "ch2", _fake("ch2", _drawing))
    monkeypatch.setitem(EXPERIMENTS, "ch1", _fake("ch1", _drawing))
    run_tour(["ch1", "ch2"], out_dir=str(tmp_path), progress=False, echo=None)
    stale = tmp_path / "figures" / "ch2-old-name.png"
    stale.write_bytes(b"png")
    run_tour(["ch1", "ch2"], out_dir=str(tmp_path), progress=False, echo=None)
    assert sorted(os.listdir(tmp_path / "figures")) == ["ch1-only.png", "ch2-only.png"]


# ----------------------------------------------------------------------------- claims that can fail
def test_checkpoint_checks_fail_when_checkpointing_does_nothing(monkeypatch):
    """Chapter 6: with a checkpoint that keeps everything (the plain function), the memory
    fraction is 1 and nothing is recomputed: both checks fail."""
    import wonderland as wl
    from wonderland.experiments import ch06_autodiff
    from wonderland.experiments.base import Context

    plain, ckpt, same, recompute = ch06_autodiff._checkpoint_memory(Context("", quick=True))
    assert ckpt / plain < 0.5 and 0.9 <= recompute <= 1.25
    monkeypatch.setattr(wl, "checkpoint", lambda f: f)
    plain, ckpt, same, recompute = ch06_autodiff._checkpoint_memory(Context("", quick=True))
    assert ckpt / plain >= 0.5 and recompute < 0.9


def test_underfitting_check_fails_when_a_line_is_the_right_model(monkeypatch, tmp_path):
    """Chapter 3: on a straight-line target the degree-1 fit is as good as the best one,
    so the underfitting check cannot pass by definition."""
    from wonderland.experiments import ch03_datasets_losses as ch3
    from wonderland.experiments.base import Context

    monkeypatch.setattr(ch3, "_target", lambda x: 2.0 * x - 1.0)
    result = ch3.run(Context(str(tmp_path), quick=True, chapter="ch3"))
    check = next(c for c in result.checks if "underfits" in c.description)
    assert not check.passed


def test_effective_rank_check_fails_when_the_residual_variant_is_plain(monkeypatch):
    """Chapter 12: with residual connections and normalisation switched off, the two
    variants are the same plain network trained alike, so neither spreads its outputs over
    more directions than the other and the effective-rank check fails."""
    import wonderland as wl
    from wonderland.experiments import ch12_graphs as ch12
    from wonderland.experiments.base import Context

    gcn = wl.models.GCN
    monkeypatch.setattr(wl.models, "GCN", lambda *args, residual=False, norm=None, **kwargs:
                        gcn(*args, **kwargs))
    ctx = Context("", quick=True)
    with ch12._blas_one_thread():
        g = wl.graph.load_citeseer(features="sparse", normalize_features=True)
        _, depths, trained, _ = ch12._oversmoothing(ctx, g)
    assert not ch12.effective_rank_check(ctx, trained, depths).passed


def test_scaling_law_fit_recovers_known_exponents():
    """Chapter 1's fit of L(N, D) = E + A/N^α + B/D^β on a grid generated from the law, and
    the compute-optimal size it implies."""
    import numpy as np
    from wonderland.experiments.ch01_scaling import compute_optimal, fit_scaling_law

    n, d = np.meshgrid(np.geomspace(3e3, 2e5, 4), np.geomspace(2e4, 4e5, 5))
    truth = (1.2, 40.0, 0.4, 300.0, 0.35)
    loss = truth[0] + truth[1] / n ** truth[2] + truth[3] / d ** truth[4]
    (e, a, alpha, b, beta), rmse = fit_scaling_law(n.ravel(), d.ravel(), loss.ravel())
    assert rmse < 1e-3
    assert abs(alpha - 0.4) < 0.02 and abs(beta - 0.35) < 0.02 and abs(e - 1.2) < 0.05
    c = np.geomspace(1e10, 1e14, 5)
    n_opt, l_opt = compute_optimal((e, a, alpha, b, beta), c)
    slope = np.polyfit(np.log(c), np.log(n_opt), 1)[0]
    assert abs(slope - beta / (alpha + beta)) < 1e-6
    # the optimum beats its neighbours at the same compute
    for factor in (0.5, 2.0):
        n2 = n_opt * factor
        other = e + a / n2 ** alpha + b / (c / 6 / n2) ** beta
        assert np.all(other > l_opt)


def test_chapter_13_summary_states_the_measured_growth(tmp_path_factory):
    _, result, _ = _quick_run("ch13", tmp_path_factory)
    growth = result.metrics["time_growth_longest_over_shortest"]
    assert "cost little more" not in result.summary
    for name, g in growth.items():
        assert f"{g:.0f}× for the {name}" in result.summary


def test_chapter_1_fits_a_grid_of_sizes_and_data(tmp_path_factory):
    _, result, _ = _quick_run("ch1", tmp_path_factory)
    grid = result.metrics["grid"]
    sizes = {r["non_embedding_parameters"] for r in grid}
    data = {r["training_characters"] for r in grid}
    assert len(sizes) >= 4 and len(data) >= 4 and len(grid) == len(sizes) * len(data)
    assert 0 < result.metrics["fit_alpha"] < 2 and 0 < result.metrics["fit_beta"] < 2
    assert "2–2 layers" not in result.summary and "R² = 1.00" not in result.summary
    assert any("predicted by the law" in c.description for c in result.checks)


def test_gitignore_covers_every_virtual_environment_and_tour_output():
    import fnmatch
    import pathlib

    patterns = [line.strip() for line in
                (pathlib.Path(__file__).resolve().parents[2] / ".gitignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for name in (".venv", ".venv-py312", "wonderland-out", "wonderland-out-seed3"):
        assert any(fnmatch.fnmatch(name, p.rstrip("/")) for p in patterns), name


def test_figcheck_finds_bars_on_a_cut_axis():
    from wonderland.experiments.figcheck import figure_problems
    from wonderland.experiments.plotting import explained, plt

    fig = plt.figure(figsize=(3, 2))
    ax = fig.add_subplot(111)
    explained(ax.bar([0, 1], [0.90, 0.95]), "bars")
    ax.set_xlabel("model")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.89, 0.96)
    assert any("does not start at 0" in p for p in figure_problems(fig, "bars"))
    ax.set_ylim(0, 1)
    assert figure_problems(fig, "bars") == []
    plt.close(fig)
