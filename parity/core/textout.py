"""Text for people: tables that fit the width they are read at, plain text in logs.

Commands build their result dicts first; this module only decides what of a
result fits and how it is drawn (it computes nothing):

- on a terminal: rich, with colour and a box-drawn table, at the terminal's
  width (or COLUMNS);
- anywhere else (a pipe, a file, a CI log): plain text without colour or box
  drawing, every line within COLUMNS (80 when unset) and nothing cut short.

A table keeps its columns of priority 0 always and adds the others, lowest
priority number first, while they fit; the columns left out are named under
the table. `wide=True` keeps every column whatever the width. When even the
columns of priority 0 do not fit, each row is printed as a short block of
`header: value` lines instead, so a value is never truncated.
"""
from __future__ import annotations

import os
import sys
import textwrap
from dataclasses import dataclass
from typing import List, Optional, Sequence

DEFAULT_WIDTH = 80  # off a terminal, without COLUMNS: what a log viewer or an issue shows
GAP = "  "  # between plain columns


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed, or not a real stream
        return False


def output_width(stream) -> int:
    """COLUMNS when set (as rich does), else the terminal's width, else 80."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if is_terminal(stream):
        try:
            return os.get_terminal_size(stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            pass
    return DEFAULT_WIDTH


@dataclass(frozen=True)
class Column:
    header: str
    priority: int = 0  # 0: always shown; larger numbers are left out first when narrow
    align: str = "left"  # or "right" (numbers)


class Out:
    """Writes to `stream` (stdout by default) as a terminal or as a log."""

    def __init__(self, stream=None, width: Optional[int] = None, wide: bool = False, terminal: Optional[bool] = None):
        self.stream = stream or sys.stdout
        self.terminal = is_terminal(self.stream) if terminal is None else terminal
        self.width = width or output_width(self.stream)
        self.wide = wide
        self._console = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream, width=self.width, highlight=False, soft_wrap=False,
                                    force_terminal=self.terminal, no_color=not self.terminal)
        return self._console

    # ------------------------------------------------------------ lines
    def print(self, text: str = "", style: Optional[str] = None, indent: str = "") -> None:
        """One paragraph, wrapped at the width (continuation lines get `indent`)."""
        if self.terminal:
            from rich.text import Text

            self.console.print(Text(text, style=style or ""))
            return
        self._plain(wrap(text, self.width, indent))

    def rule(self, title: str) -> None:
        if self.terminal:
            self.console.rule(title)
        else:
            self._plain([f"== {title} =="] if len(title) + 6 <= self.width else wrap(title, self.width))

    def fields(self, pairs: Sequence[tuple], styles: Optional[dict] = None, indent: str = "") -> None:
        """`label  value` lines, labels aligned, values wrapped under themselves
        (below the label when the label column would leave too little room)."""
        pairs = [(str(k), "" if v is None else str(v)) for k, v in pairs]
        if not pairs:
            return
        label_w = max(len(k) for k, _ in pairs)
        hanging = len(indent) + label_w + len(GAP)
        if self.width - hanging < max(12, self.width // 3):  # too little room beside the labels
            hanging = len(indent) + 4
        for k, v in pairs:
            style = (styles or {}).get(k)
            lines = []
            hang = hanging
            longest = max((len(w) for w in v.split()), default=0)
            if longest > self.width - hang:  # a path or a hash: below the label, whole if it fits there
                hang = len(indent) + 4
            for n, para in enumerate(v.split("\n") or [""]):
                first = f"{indent}{k.ljust(label_w)}{GAP}" if n == 0 else " " * hang
                if len(first) > hang:  # the label alone: the value starts below it
                    lines.append(first.rstrip())
                    first = " " * hang
                lines += wrap(first + para, self.width, " " * hang)
            if self.terminal and style:
                from rich.text import Text

                self.console.print(Text("\n".join(lines), style=style))
            else:
                self._emit(lines)

    # ------------------------------------------------------------ tables
    def table(self, columns: Sequence[Column], rows: Sequence[Sequence[str]], title: Optional[str] = None,
              row_styles: Optional[Sequence[Optional[str]]] = None, hint: str = "") -> List[str]:
        """Print `rows` (strings, one per column) under `title`; returns the
        headers left out for width (also named under the table, with `hint`)."""
        rows = [[str(c) for c in row] for row in rows]
        keep = self._choose(columns, rows)
        left_out = [c.header for i, c in enumerate(columns) if keep is not None and i not in keep]
        if keep is None:  # even the essential columns do not fit: one block per row
            self._records(columns, rows, title)
        elif self.terminal:
            self._rich_table(columns, rows, keep, title, row_styles)
        else:
            self._plain_table(columns, rows, keep, title)
        if left_out:
            self.print(f"Not shown at {self.width} columns: {', '.join(left_out)}"
                       + (f" ({hint})" if hint else "") + ".", style="dim")
        return left_out

    def _widths(self, columns, rows):
        return [max([len(c.header)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]

    def _fits(self, columns, rows, keep, widths) -> bool:
        if self.terminal:
            from rich.measure import Measurement

            table = self._build_rich(columns, rows, keep, None, None)
            # measured unconstrained: rich would otherwise squeeze the table into the width
            options = self.console.options.update_width(10 ** 5)
            return Measurement.get(self.console, options, table).maximum <= self.width
        return sum(widths[i] for i in keep) + len(GAP) * (len(keep) - 1) <= self.width

    def _choose(self, columns, rows):
        """Indices of the columns to show, in table order; None if the
        priority-0 columns alone are too wide."""
        widths = self._widths(columns, rows)
        if self.wide:
            return list(range(len(columns)))
        keep = [i for i, c in enumerate(columns) if c.priority == 0]
        if not self._fits(columns, rows, keep, widths):
            return None
        for i in sorted((i for i, c in enumerate(columns) if c.priority > 0), key=lambda i: (columns[i].priority, i)):
            trial = sorted(keep + [i])
            if self._fits(columns, rows, trial, widths):
                keep = trial
        return keep

    def _build_rich(self, columns, rows, keep, title, row_styles):
        from rich import box
        from rich.table import Table

        t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False,
                  title_justify="left")
        for i in keep:
            t.add_column(columns[i].header, justify=columns[i].align, no_wrap=True)
        for n, row in enumerate(rows):
            t.add_row(*(row[i] for i in keep), style=(row_styles[n] if row_styles else None))
        return t

    def _rich_table(self, columns, rows, keep, title, row_styles):
        self.console.print(self._build_rich(columns, rows, keep, title, row_styles))

    def _plain_table(self, columns, rows, keep, title):
        widths = self._widths(columns, rows)

        def line(cells):
            parts = [(c.rjust(widths[i]) if columns[i].align == "right" else c.ljust(widths[i]))
                     for i, c in zip(keep, cells)]
            return GAP.join(parts).rstrip()

        out = wrap(title, self.width) if title else []
        out.append(line([columns[i].header for i in keep]))
        out.append(line(["-" * widths[i] for i in keep]))
        out += [line([row[i] for i in keep]) for row in rows]
        self._plain(out)

    def _records(self, columns, rows, title):
        if title:
            self.print(title)
        for row in rows:
            self.print(row[0])
            self.fields([(c.header, row[i]) for i, c in enumerate(columns) if i > 0], indent="  ")

    # ------------------------------------------------------------ low level
    def _plain(self, lines: List[str]) -> None:
        self.stream.write("".join(line + "\n" for line in lines))
        self.stream.flush()

    def _emit(self, lines: List[str]) -> None:
        if self.terminal:
            from rich.text import Text

            self.console.print(Text("\n".join(lines)))
        else:
            self._plain(lines)


def wrap(text: str, width: int, indent: str = "") -> List[str]:
    """Lines of at most `width` characters; words longer than a line (paths,
    hashes) are split, never cut off."""
    out = []
    for n, para in enumerate(str(text).split("\n")):
        lead = "" if n == 0 else indent
        if len(lead + para) <= width:
            out.append(lead + para)
            continue
        out += textwrap.wrap(lead + para, width=width, subsequent_indent=indent, break_long_words=True,
                             break_on_hyphens=False, drop_whitespace=True) or [""]
    return out


def sci(v, digits: int = 1) -> str:
    """A number in fixed scientific notation (`%.1e`), '-' for none; inf and
    nan as Python writes them, so every cell parses with float()."""
    if v is None:
        return "-"
    return f"{float(v):.{digits}e}"
