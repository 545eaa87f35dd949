"""Progress a person can follow in a terminal and in a log.

On a terminal: one rich line (what runs now, a bar when the amount of work is
known, done/total, rate, elapsed), redrawn only when the work reports, never
from a background thread, so a timed loop is never disturbed by it.
Elsewhere (a file, a pipe, a CI log): plain timestamped lines on stderr, one
per stage and at most one every `interval` seconds while a stage advances:

    [  12.4 s] certify: layer diff: 57/137 modules (GENet_small: module_list.4)

Callers report only between units of work (a batch, a layer segment, a
stage); nothing here runs inside a timed iteration. The one exception to
"never from a background thread" is `heartbeat`, for a single long call that
cannot report (a compilation): it speaks only while that call blocks, and
never while anything is timed.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Dict, List, Optional

from parity.core.textout import is_terminal

PLAIN_INTERVAL_S = 5.0
HEARTBEAT_S = 10.0


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """`with Progress("eval") as p: p.stage("decoding", total=n); p.update(done=k)`."""

    def __init__(self, name: str, stream=None, interval: float = PLAIN_INTERVAL_S, enabled: bool = True,
                 terminal: Optional[bool] = None, unit: str = ""):
        self.name = name
        self.stream = stream or sys.stderr
        self.interval = interval
        self.enabled = enabled
        self.terminal = is_terminal(self.stream) if terminal is None else terminal
        self.unit = unit
        self.start = time.perf_counter()
        self._bar = None
        self._task = None
        self._text = ""
        self._total = None
        self._done = 0
        self._first = None  # (time, done) of the stage's first update: the rate excludes resumed work
        self._last_line = 0.0

    # ------------------------------------------------------------ context
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # ------------------------------------------------------------ reporting
    def stage(self, text: str, total: Optional[int] = None, unit: Optional[str] = None) -> None:
        """A new step; always shown (a plain line with the elapsed time)."""
        self._text, self._total, self._done, self._first = text, total, 0, None
        if unit is not None:
            self.unit = unit
        if not self.enabled:
            return
        if self.terminal:
            self._draw(detail="")
        else:
            self._line(text + (f" (0/{total}{' ' + self.unit if self.unit else ''})" if total else ""))

    def update(self, done: Optional[int] = None, advance: int = 0, total: Optional[int] = None,
               detail: str = "") -> None:
        """Work done in the current stage (absolute `done` or `advance`)."""
        if total is not None:
            self._total = total
        self._done = done if done is not None else self._done + advance
        now = time.perf_counter()
        if self._first is None:
            self._first = (now, self._done)
        if not self.enabled:
            return
        if self.terminal:
            self._draw(detail)
        elif now - self._last_line >= self.interval or (self._total and self._done >= self._total):
            self._line(f"{self._text}: {self._count()}" + (f" ({detail})" if detail else "") + self._eta(now))

    def note(self, text: str) -> None:
        """A line that stays (on a terminal: printed above the live line)."""
        if not self.enabled:
            return
        if self.terminal:
            from rich.console import Console
            from rich.text import Text

            (self._bar.console if self._bar is not None else Console(file=self.stream, highlight=False)).print(
                Text(text))
        else:
            self._line(text)

    def say(self, text: str) -> None:
        """A stage without a known amount of work (the callback form many APIs take)."""
        self.stage(text)

    # ------------------------------------------------------------ internals
    def rate(self, now: Optional[float] = None) -> Optional[float]:
        if self._first is None:
            return None
        t0, d0 = self._first
        elapsed = (now or time.perf_counter()) - t0
        return (self._done - d0) / elapsed if elapsed > 0 and self._done > d0 else None

    def _count(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{self._done}/{self._total}{unit}" if self._total else f"{self._done}{unit}"

    def _eta(self, now) -> str:
        r = self.rate(now)
        if not r or not self._total or self._done >= self._total:
            return ""
        return f", {r:.3g} {self.unit or 'items'}/s, about {_duration((self._total - self._done) / r)} left"

    def _line(self, text: str) -> None:
        self._last_line = time.perf_counter()
        elapsed = self._last_line - self.start
        try:
            self.stream.write(f"[{elapsed:6.1f} s] {self.name}: {text}\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # a closed log must not stop the work
            pass

    def _draw(self, detail: str) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn
            from rich.table import Column as RichColumn

            console = Console(file=self.stream, highlight=False)
            self._bar = RichProgress(
                TextColumn(f"{self.name}: {{task.description}}", table_column=RichColumn(no_wrap=True, ratio=2)),
                TextColumn("{task.fields[count]}", table_column=RichColumn(no_wrap=True)),
                BarColumn(bar_width=12), TimeElapsedColumn(),
                TextColumn("{task.fields[detail]}", table_column=RichColumn(no_wrap=True, ratio=1)),
                console=console, transient=True, auto_refresh=False, expand=True)
            self._task = self._bar.add_task("", total=None, count="", detail="")
            self._bar.start()
        now = time.perf_counter()
        eta = self._eta(now).lstrip(", ")
        self._bar.update(self._task, description=self._text, total=self._total, completed=self._done,
                         count=self._count() if (self._total or self._done) else "",
                         detail="  ".join(x for x in (detail, eta) if x))
        self._bar.refresh()


@contextlib.contextmanager
def heartbeat(say, what: str, every: Optional[float] = None):
    """While the body runs, `say(f"{what}: N s so far")` every
    `every` seconds, from a background thread: for one long call that cannot
    report itself (torch.compile's first call, a predictor's build), so that a
    log never goes silent for a minute. Never wrap timed work in it."""
    every = HEARTBEAT_S if every is None else every
    done = threading.Event()
    start = time.perf_counter()

    def beat():
        while not done.wait(every):
            say(f"{what}: {_duration(time.perf_counter() - start)} so far")

    thread = threading.Thread(target=beat, name="progress-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


class PhaseClock:
    """Wall seconds summed per named phase: `with clock("torch"): ...`. A
    phase timed inside another is counted in its own phase only (the outer
    one gets the rest). Reports read `totals()`; nothing here prints."""

    def __init__(self):
        self._totals: Dict[str, float] = {}
        self._nested: List[float] = []  # per open phase: seconds spent in phases opened inside it

    @contextlib.contextmanager
    def __call__(self, phase: str):
        t0 = time.perf_counter()
        self._nested.append(0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t0
            inner = self._nested.pop()
            self._totals[phase] = self._totals.get(phase, 0.0) + elapsed - inner
            if self._nested:
                self._nested[-1] += elapsed

    def totals(self) -> Dict[str, float]:
        return dict(self._totals)


def step_callback(progress, total: int, description: str):
    """(report(done, total, label), bar) for a library function's `progress`
    argument: a callable is used as it is, True draws a transient rich bar
    (stop it with bar.stop()), False reports nowhere."""
    if callable(progress):
        return progress, None
    if not progress:
        return (lambda done, total, label: None), None
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    bar = RichProgress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                       TimeElapsedColumn(), transient=True)
    task = bar.add_task(description, total=total)
    bar.start()
    return (lambda done, total_, label: bar.update(task, completed=done, description=label)), bar
