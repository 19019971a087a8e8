"""The tour's HTML report: a summary table, then one section per experiment with its
paragraph, checks, metrics and figures."""

from __future__ import annotations

import html
import os

from .catalog import EXPERIMENTS

_STYLE = """
body { font-family: Georgia, 'Times New Roman', serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.5; }
h1 { font-weight: normal; font-size: 2rem; margin-bottom: 0; }
h2 { font-weight: normal; border-bottom: 1px solid #ddd; margin-top: 2.5rem; }
.sub { color: #666; margin-top: 0.2rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
td, th { padding: 0.25rem 0.7rem; border-bottom: 1px solid #eee; text-align: left; }
th { background: #f6f6f6; }
.ok { color: #1a7f37; } .fail { color: #c62828; font-weight: bold; }
.banner { padding: 0.6rem 1rem; border-radius: 4px; font-size: 1.1rem; margin: 1rem 0; }
.banner.pass { background: #e6f4ea; color: #1a7f37; border: 1px solid #a8d5b5; }
.banner.failed { background: #fdecea; color: #c62828; border: 1px solid #f5b5ae; }
.banner.partial { background: #fff8e1; color: #8a6d00; border: 1px solid #f0d98a; }
.note { color: #777; font-size: 0.85rem; }
td table { margin: 0; font-size: 0.85rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""


def _fmt(v):
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10_000:
        return f"{v:,}"
    return html.escape(str(v))


def _scalar(v) -> bool:
    return not isinstance(v, (dict, list, tuple))


def _metric_html(v) -> str:
    """A metric as HTML: a number or text as it is, a list of numbers inline, a dict as a
    two-column table, a list of dicts (rows of one experiment) as a table with a column
    per key."""
    if _scalar(v):
        return _fmt(v)
    if isinstance(v, dict):
        if not v:
            return "—"
        return "<table>" + "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_metric_html(x)}</td></tr>"
                                   for k, x in v.items()) + "</table>"
    items = list(v)
    if items and all(isinstance(x, dict) for x in items):
        keys = list(dict.fromkeys(k for x in items for k in x))
        head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)
        body = "".join("<tr>" + "".join(f"<td>{_metric_html(x.get(k, ''))}</td>" for k in keys)
                       + "</tr>" for x in items)
        return f"<table><tr>{head}</tr>{body}</table>"
    if all(_scalar(x) for x in items):
        return ", ".join(_fmt(x) for x in items) or "—"
    return "<br>".join(_metric_html(x) for x in items)


def _banner(results, quick, status, pending) -> str:
    """One line on top: did every check pass, and is the run whole?"""
    n = sum(len(r.checks) for r in results.values())
    failed = [(ch, c) for ch, r in results.items() for c in r.checks if not c.passed]
    mode = " (quick mode: smaller settings, some thresholds relaxed and named)" if quick else ""
    if failed:
        chapters = ", ".join(dict.fromkeys(ch for ch, _ in failed))
        return (f"<div class='banner failed'>✗ {len(failed)} of {n} checks failed, in "
                f"{html.escape(chapters)}{mode}.</div>")
    if status != "complete":
        return (f"<div class='banner partial'>All {n} checks of the {len(results)} finished "
                f"chapter(s) passed, but the run is not complete{mode}.</div>")
    return (f"<div class='banner pass'>✓ All {n} checks passed in {len(results)} "
            f"chapter(s){mode}.</div>")


def write_html(path, results, env, quick, status="complete", pending=()):
    """Write the report for ``results``; an unfinished run (``status`` other than
    ``"complete"``) says so and names the ``pending`` chapters."""
    e = html.escape
    rows = []
    for ch, r in results.items():
        n_ok = sum(c.passed for c in r.checks)
        cls = "ok" if r.passed else "fail"
        rows.append(f"<tr><td><a href='#{ch}'>{ch}</a></td><td>{e(EXPERIMENTS[ch].title)}</td>"
                    f"<td class='{cls}'>{n_ok}/{len(r.checks)}</td><td>{r.seconds:.1f} s</td></tr>")
    sections = []
    for ch, r in results.items():
        checks = "".join(
            f"<tr><td class='{'ok' if c.passed else 'fail'}'>{'✓' if c.passed else '✗'}</td>"
            f"<td>{e(c.description)}{f' <span class=note>({e(c.note)})</span>' if c.note else ''}"
            f"</td><td>{_fmt(c.value)} {e(c.op)} {_fmt(c.threshold)}</td></tr>"
            for c in r.checks)
        metrics = "".join(f"<tr><td><code>{e(k)}</code></td><td>{_metric_html(v)}</td></tr>"
                          for k, v in r.metrics.items())
        figures = "".join(f"<figure><img src='{e(f.path)}' alt='{e(f.caption)}'>"
                          f"<figcaption>{e(f.caption)}</figcaption></figure>" for f in r.figures)
        sections.append(
            f"<h2 id='{ch}'>{e(ch)} · {e(EXPERIMENTS[ch].title)}</h2>"
            f"<p>{e(r.summary)}</p><table><tr><th></th><th>check</th><th>measured</th></tr>{checks}</table>"
            f"{figures}<details><summary>all metrics</summary><table>{metrics}</table></details>")
    total = sum(r.seconds for r in results.values())
    env_line = (f"wonderland {e(env['wonderland'])} · Python {e(env['python'])} · NumPy "
                f"{e(env['numpy'])} · BLAS: {e(str(env['blas']))} · "
                f"{e(env['date'])} · {total:.0f} s{' · quick mode' if quick else ''}")
    note = ""
    if status != "complete":
        what = {"running": "still running", "interrupted": "interrupted",
                "failed": "stopped by an error"}.get(status, status)
        note = (f"<p class='fail'>This run is {e(what)}: it holds the chapters that finished"
                f"{'; not run: ' + e(', '.join(pending)) if pending else ''}.</p>")
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>wonderland tour</title>"
           f"<style>{_STYLE}</style></head><body><h1>A tour of wonderland</h1>"
           f"<p class='sub'>{env_line}</p>{_banner(results, quick, status, pending)}{note}<p>One small experiment per chapter of <em>Alice's "
           f"Adventures in a Differentiable Wonderland</em>, each trained or computed here from "
           f"first principles, with the checks it must pass.</p>"
           f"<table><tr><th>chapter</th><th>experiment</th><th>checks</th><th>time</th></tr>"
           f"{''.join(rows)}</table>{''.join(sections)}</body></html>")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(doc)
    os.replace(tmp, path)
