"""The shared output helpers: tables that fit, plain text off a terminal,
progress lines a log keeps."""
from __future__ import annotations

import io
import re

from parity.core.progress import Progress
from parity.core.textout import Column, Out, wrap

COLUMNS = [Column("name"), Column("value", 0, "right"), Column("detail", 1), Column("extra", 2)]
ROWS = [["alpha", "1.0e-06", "first of the rows", "x" * 30], ["beta", "22", "second", "y"]]


def render(width, wide=False, terminal=False, rows=ROWS):
    buf = io.StringIO()
    out = Out(buf, width=width, wide=wide, terminal=terminal)
    left_out = out.table(COLUMNS, rows, title="a title", hint="--wide")
    return buf.getvalue(), left_out


def test_columns_are_added_by_priority_while_they_fit():
    text, left_out = render(40)
    assert left_out == ["extra"]
    assert "first of the rows" in text and "x" * 30 not in text
    assert "Not shown at 40 columns: extra (--wide)." in text
    assert all(len(line) <= 40 for line in text.splitlines())
    text, left_out = render(24)
    assert left_out == ["detail", "extra"]
    assert all(len(line) <= 24 for line in text.splitlines())


def test_wide_keeps_every_column_and_nothing_is_cut():
    text, left_out = render(20, wide=True)
    assert left_out == [] and "x" * 30 in text and "first of the rows" in text


def test_rows_become_blocks_when_the_essential_columns_do_not_fit():
    rows = [["a-very-long-name-that-takes-the-whole-line", "3.5", "d", "e"]]
    text, _ = render(30, rows=rows)
    lines = text.splitlines()
    assert all(len(line) <= 30 for line in lines)
    assert "".join(lines).count("a-very-long-name-that-takes-the-whole-line"[:25]) == 1
    assert any(re.match(r"^\s+value\s+3\.5$", line) for line in lines)


def test_terminal_tables_fit_the_width_too():
    text, left_out = render(40, terminal=True)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert all(len(line) <= 40 for line in plain.splitlines())
    assert "alpha" in plain and left_out


def test_wrap_splits_long_words_instead_of_cutting_them():
    word = "h" * 100
    lines = wrap(f"sha256 {word}", 40, indent="  ")
    assert all(len(line) <= 40 for line in lines)
    assert "".join(line.strip() for line in lines[1:]) == word or "".join(lines).replace(" ", "").endswith(word)


def test_fields_put_a_long_value_below_its_label():
    buf = io.StringIO()
    Out(buf, width=40, terminal=False).fields([("path", "/" + "p" * 34), ("n", "3")])
    lines = buf.getvalue().splitlines()
    assert lines[0] == "path" and lines[1] == "    /" + "p" * 34 and lines[2] == "n     3"


def test_plain_progress_lines_per_stage_and_throttled_updates():
    buf = io.StringIO()
    with Progress("job", stream=buf, interval=3600, terminal=False, unit="images") as p:
        p.stage("step 1/2: reading (next: work)")
        p.stage("step 2/2: work", total=10)
        for _ in range(10):
            p.update(advance=1, detail="running")
    lines = buf.getvalue().splitlines()
    # the stage lines and the stage's end: the interval holds the updates between back
    assert re.match(r"^\[\s+\d+\.\d s\] job: step 1/2: reading \(next: work\)$", lines[0])
    assert lines[1].endswith("job: step 2/2: work (0/10 images)")
    assert lines[2].endswith("job: step 2/2: work: 10/10 images (running)")
    assert len(lines) == 3
    buf = io.StringIO()
    p = Progress("job", stream=buf, interval=0, terminal=False)
    p.stage("work", total=3)
    for _ in range(3):
        p.update(advance=1)
    assert len(buf.getvalue().splitlines()) == 4  # interval 0: a line for every update


def test_terminal_progress_draws_without_a_thread():
    import threading

    buf = io.StringIO()
    before = threading.active_count()
    with Progress("job", stream=buf, terminal=True) as p:
        p.stage("work", total=3)
        p.update(advance=1)
        assert threading.active_count() == before  # no refresh thread: a timed loop runs undisturbed
        p.note("a line that stays")
    assert "a line that stays" in buf.getvalue()
