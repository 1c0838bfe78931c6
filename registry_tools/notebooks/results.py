"""What a step shows and keeps: `StepResult`, readable in a browser, a CI log and pandas.

Every output carries a `text/plain` version beside its rich one, so an executed notebook read
as text (a CI log, `jupyter nbconvert --to markdown`, papermill's log) shows the summary and
not `<IPython.core.display.HTML object>`. The result's one-line summary also travels in the
output's metadata (`registry-tools.summary`), where `notebook run-all` reads it back.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from registry_tools import files
from registry_tools.errors import UserError
from registry_tools.notebooks import plots
from registry_tools.notebooks.runner import OUTPUT_METADATA

if TYPE_CHECKING:  # pandas is optional (the notebooks extra): imported only by `frames`
    import pandas

Rows = list[dict[str, Any]]


@dataclass
class StepResult:
    """A step's summary rows, tables shown, data kept for exploration, figures, failures.

    `tables` are displayed; `data` (every node, every version, each request's time ...) is
    only kept, for `frames()`. `notes` are things the reader must know that are not
    failures (a re-recording that was not kept). `headline`, when set, is the one-line
    summary; otherwise it is built from `summary`.
    """

    title: str
    summary: dict[str, Any]
    figures: dict[str, Figure] = field(default_factory=dict)
    tables: dict[str, Rows] = field(default_factory=dict)
    data: dict[str, Rows] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    headline: str | None = None
    figure_paths: dict[str, Path] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def problem(self) -> str:
        more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        items = "item" if len(self.failures) == 1 else "items"
        return f"{self.title}: {len(self.failures)} {items} failed: {self.failures[0]}{more}"

    def summary_line(self) -> str:
        """One line for a log: the headline (or the summary rows), failures, notes."""
        line = self.headline or f"{self.title}: " + ", ".join(
            f"{key} {value}" for key, value in self.summary.items() if not key.startswith("plot ")
        )
        if self.failures:
            line += f"; {len(self.failures)} failed, first: {self.failures[0]}"
        return " ".join([line, *(f"(note: {note})" for note in self.notes)])

    def _shown_tables(self) -> dict[str, Rows]:
        tables = dict(self.tables)
        if self.failures:
            tables["failures (retried by the next run)"] = [{"failed": f} for f in self.failures]
        return tables

    def html(self) -> str:
        """The summary table (class `registry-summary`), notes, then the detail tables."""
        rows = [{"": key, "value": value} for key, value in self.summary.items()]
        parts = [f"<h4>{html.escape(self.title)}</h4>", _html_table(rows, "registry-summary")]
        parts += [f'<p class="registry-note">{html.escape(note)}</p>' for note in self.notes]
        for title, table in self._shown_tables().items():
            parts += [f"<h5>{html.escape(title)}</h5>", _html_table(table, "registry-detail")]
        return "\n".join(parts)

    def text(self) -> str:
        """The same as `html()`, as plain text."""
        width = max((len(key) for key in self.summary), default=0)
        lines = [self.title, *(f"  {k:<{width}}  {v}" for k, v in self.summary.items())]
        lines += [f"note: {note}" for note in self.notes]
        for title, table in self._shown_tables().items():
            lines += ["", title, *_text_table(table)]
        return "\n".join(lines)

    def show(self) -> None:
        """Display the tables and the figures in the current output, each with plain text."""
        from IPython.display import display

        display(
            {"text/plain": self.text(), "text/html": self.html()},
            raw=True,
            metadata={OUTPUT_METADATA: {"summary": self.summary_line()}},
        )
        for name, figure in self.figures.items():
            title = figure.axes[0].get_title() if figure.axes else name
            where = self.figure_paths.get(name)
            text = f"[figure: {title}]" + (f" {where}" if where else "")
            png = base64.b64encode(plots.png_bytes(figure)).decode("ascii")
            display({"image/png": png, "text/plain": text}, raw=True)

    def save_figures(self, directory: Path, prefix: str) -> None:
        """Write each figure as `<prefix>-<name>.png` and list the files in the summary."""
        for name, figure in self.figures.items():
            path = directory / f"{prefix}-{name}.png"
            files.write_atomic(path, plots.png_bytes(figure))
            self.figure_paths[name] = path
            self.summary[f"plot {name}"] = str(path)

    def frames(self) -> dict[str, pandas.DataFrame]:
        """Summary, tables and data as pandas DataFrames (pandas comes with the notebooks
        extra; without it, `tables` and `data` are the same rows as plain lists of dicts)."""
        try:
            import pandas
        except ImportError:
            raise UserError(
                "results as DataFrames need pandas: pip install pandas (it comes with "
                "registry-tools[notebooks]); result.tables and result.data hold the same rows"
            ) from None
        frames = {"summary": pandas.DataFrame({"value": self.summary})}
        for name, rows in {**self.tables, **self.data}.items():
            frames[name] = pandas.DataFrame(rows)
        return frames


def _html_table(rows: Rows, css_class: str) -> str:
    if not rows:
        return "<p><em>nothing to show</em></p>"
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _text_table(rows: Rows) -> list[str]:
    if not rows:
        return ["  (nothing to show)"]
    columns = list(rows[0])
    cells = [[str(c) for c in columns], *([str(row.get(c, "")) for c in columns] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return [
        "  " + "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]
