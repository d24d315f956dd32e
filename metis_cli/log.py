"""Consoles and logging shared by all commands: rich output on the terminal, plain lines in log files."""

import logging
import sys
from pathlib import Path

from rich.console import Console

# Logs and CI output are not terminals: give tables room there instead of rich's 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(verbose: bool = False, log_file: Path | None = None) -> None:
    """Log to stderr (rich) and, if given, to ``log_file`` with timestamps."""
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose else logging.INFO
    terminal = RichHandler(console=err_console, show_path=False, rich_tracebacks=False, markup=False)
    terminal.setFormatter(logging.Formatter("%(message)s"))
    handlers: list[logging.Handler] = [terminal]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handlers.append(file_handler)
    logging.basicConfig(level=level, handlers=handlers, force=True)


class _LogProgress:
    """Stands in for a rich progress bar when stderr is not a terminal (logs, CI): one line per 10%."""

    def __init__(self):
        self.tasks: dict[int, list] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, description: str, total: int) -> int:
        import time

        self.tasks[len(self.tasks)] = [description, total, 0, 0, time.time()]
        return len(self.tasks) - 1

    def advance(self, task: int, step: int = 1) -> None:
        import time

        entry = self.tasks[task]
        description, total, done, last_decile, start = entry
        entry[2] = done = done + step
        decile = int(10 * done / max(total, 1))
        if decile > last_decile or done == total:
            entry[3] = decile
            err_console.print(
                f"{description}: {done}/{total} ({time.time() - start:.0f} s)", highlight=False, soft_wrap=True
            )


def progress(**kwargs):
    """A rich progress bar on stderr; a line per 10% when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return _LogProgress()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        **kwargs,
    )
