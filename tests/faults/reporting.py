"""
Reports for the fault matrix and the bad-input catalogue, written to a file at the end of the run.

The terminal gets a short summary naming the file (``build/test-reports/faults.txt``, or the path in
``WFRUN_FAULT_REPORT``), so ``make test`` stays readable; the file has every cell and case.

A plugin, registered by ``tests/conftest.py``: under pytest-xdist the process that prints the summary
collects no test, so a conftest of ``tests/faults`` would not be loaded there. Each test's cells and cases
travel in its report's ``user_properties`` to that process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wfrun.platforms import adapter_classes


@dataclass
class Cell:
    """What one fault did to one task: how it ended, and how many requests it cost."""

    platform: str
    fault: str
    phase: str
    mode: str
    outcome: str = "?"
    retries: int = 0
    #: The typed error's class name and message, and the part of the message that names the fault.
    error: str = ""
    message: str = ""
    named: str = ""
    submissions: int = 0
    seconds: float = 0.0
    note: str = ""
    xfail: bool = False

    def text(self, width: int) -> str:
        """A printed cell: the outcome, or the error type, what names the fault, and the message."""
        if not self.error:
            text = f"{self.outcome} [{self.note}]" if self.note else self.outcome
        else:
            tags = "; ".join(part for part in (self.named, self.note) if part)
            text = f"{self.error} ({tags}): {self.message}"
        if self.xfail:
            text = f"XFAIL {text}"
        return text if len(text) <= width else text[: width - 1] + "…"

    def markdown(self) -> str:
        """One cell of the matrix in ``docs/failure-semantics.md``: short, without the message."""
        if not self.error:
            text = self.outcome
        else:
            text = f"`{self.error}` {self.named}"
            if "may have started a run" in self.message:
                text += ", may have started a run"
        if self.note:
            text += f"; {self.note}"
        return f"{text} (xfail)" if self.xfail else text


@dataclass
class Reports:
    cells: list[Cell] = field(default_factory=list)
    catalogue: list[dict[str, Any]] = field(default_factory=list)


_REPORTS = pytest.StashKey[Reports]()
#: The names under which a test's cell and cases travel in its report's ``user_properties``: with
#: pytest-xdist each test runs in a worker, and only its reports reach the process that prints the summary.
_CELL = "wfrun_fault_cell"
_CASE = "wfrun_bad_input_case"


class _Collector:
    """Collects every test's cells and cases from its teardown report, in this process or from a worker."""

    def __init__(self, reports: Reports) -> None:
        self.reports = reports

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":
            return
        for name, value in report.user_properties:
            if name == _CELL:
                self.reports.cells.append(Cell(**value))
            elif name == _CASE:
                self.reports.catalogue.append(value)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_REPORTS] = Reports()
    config.pluginmanager.register(_Collector(config.stash[_REPORTS]), "wfrun-fault-reports")


@pytest.fixture
def reports(request: pytest.FixtureRequest) -> Iterator[Reports]:
    """This test's cells and cases; filled in as it runs, and attached to its report when it ends."""
    mine = Reports()
    yield mine
    properties = request.node.user_properties
    properties.extend((_CELL, asdict(cell)) for cell in mine.cells)
    properties.extend((_CASE, dict(case)) for case in mine.catalogue)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller writes the report
    reports = config.stash.get(_REPORTS, None)
    if reports is None or not (reports.cells or reports.catalogue):
        return
    lines: list[str] = []
    if reports.cells:
        lines += matrix_lines(reports.cells)
        target = os.environ.get("WFRUN_FAULT_MATRIX_MARKDOWN")
        if target:
            Path(target).write_text("\n".join(matrix_markdown(reports.cells)) + "\n")
    if reports.catalogue:
        lines += catalogue_lines(reports.catalogue)
    path = Path(os.environ.get("WFRUN_FAULT_REPORT") or config.rootpath / "build/test-reports/faults.txt")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    terminalreporter.write_sep("-", "fault tests")
    for line in summary_lines(reports):
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"full fault matrix and bad-input catalogue: {path}")


def summary_lines(reports: Reports) -> list[str]:
    """A few lines for the terminal: how the faults ended, and how the bad inputs were refused."""
    lines = []
    if reports.cells:
        cells = reports.cells
        recovered = sum(cell.outcome.startswith(("recovered", "succeeded")) for cell in cells)
        failed = sum(cell.outcome == "failed" for cell in cells)
        lines.append(
            f"fault matrix: {len(cells)} cells, {recovered} recovered or succeeded, "
            f"{failed} failed with a typed error, {len(cells) - recovered - failed} other"
        )
    if reports.catalogue:
        errors = sorted({case["error"] for case in reports.catalogue})
        sent = sum(1 for case in reports.catalogue if case["requests"])
        lines.append(
            f"bad-input catalogue: {len(reports.catalogue)} cases refused with {', '.join(errors)}; "
            f"{sent} sent a request first"
        )
    return lines


def catalogue_lines(catalogue: list[dict[str, Any]]) -> list[str]:
    lines = ["=" * 30 + f" bad-input catalogue: {len(catalogue)} cases " + "=" * 30]
    for case in catalogue:
        lines.append(
            f"{case['id']:<42} {case['error']:<20} {case['requests']:>2} req  {case['message'][:100]}"
        )
    return lines


def matrix_lines(cells: list[Cell], width: int = 62) -> list[str]:
    """The matrix as text: one row per platform and fault, one column per phase and mode."""
    columns = sorted({(cell.phase, cell.mode) for cell in cells}, key=_column_order)
    by_key = {(cell.platform, cell.fault, cell.phase, cell.mode): cell for cell in cells}
    rows = sorted({(cell.platform, cell.fault) for cell in cells}, key=_row_order)
    recovered = sum(cell.outcome.startswith(("recovered", "succeeded")) for cell in cells)
    failed = sum(cell.outcome == "failed" for cell in cells)
    seconds = sum(cell.seconds for cell in cells)
    lines = [
        "=" * 30 + f" fault matrix: {len(cells)} cells, {recovered} recovered or succeeded, "
        f"{failed} failed with a typed error, {seconds:.0f} s " + "=" * 30,
        f"{'platform':<8} {'fault':<12} " + " ".join(f"{p + ' (' + m + ')':<{width}}" for p, m in columns),
    ]
    for platform, fault in rows:
        texts = []
        for phase, mode in columns:
            cell = by_key.get((platform, fault, phase, mode))
            texts.append(f"{cell.text(width) if cell else '-':<{width}}")
        lines.append(f"{platform:<8} {fault:<12} " + " ".join(texts))
    return lines


def matrix_markdown(cells: list[Cell]) -> list[str]:
    """The matrix as a Markdown table, for ``docs/failure-semantics.md``."""
    columns = sorted({(cell.phase, cell.mode) for cell in cells}, key=_column_order)
    by_key = {(cell.platform, cell.fault, cell.phase, cell.mode): cell for cell in cells}
    rows = sorted({(cell.platform, cell.fault) for cell in cells}, key=_row_order)
    lines = [
        "| platform | fault | " + " | ".join(f"{phase}, {mode}" for phase, mode in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for platform, fault in rows:
        texts = [
            by_key[(platform, fault, *column)].markdown() if (platform, fault, *column) in by_key else "-"
            for column in columns
        ]
        lines.append(f"| {platform} | {fault} | " + " | ".join(texts) + " |")
    return lines


_PLATFORM_ORDER = tuple(adapter_classes())
_FAULT_ORDER = (
    "429",
    "500",
    "502",
    "503",
    "504",
    "reset",
    "read-timeout",
    "malformed",
    "html",
    "truncated",
    "slow",
)


def _row_order(row: tuple[str, str]) -> tuple[int, int]:
    platform, fault = row
    return _PLATFORM_ORDER.index(platform), _FAULT_ORDER.index(fault)


def _column_order(column: tuple[str, str]) -> tuple[int, int]:
    phase, mode = column
    return ("submit", "poll").index(phase), ("transient", "persistent").index(mode)
