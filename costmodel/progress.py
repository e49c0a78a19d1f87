"""Progress of long runs on a terminal, and silence everywhere else.

``calibrate``, ``validate``, ``search`` and ``serve-sim`` run for minutes. On a terminal they
show a bar (tqdm, the optional extra ``ioaware[progress]``; without it one plain line redrawn
with ``\\r``); with ``--json``, or when stdout is not a terminal (a pipe, a file, CI), they show
nothing, so what they print stays exactly their answer. The bar goes to stderr either way.

tqdm rather than rich: one pure-Python package with no dependencies of its own, and the GPU
machine installs only the wheels carried to it; the plain fallback means progress needs no
extra at all.

How a command uses it (``args.json`` is the flag every ``ioaware`` command has)::

    from costmodel.progress import progress, show_progress

    with progress(len(cases), "validate", enabled=show_progress(args.json)) as bar:
        for case in cases:
            ...                     # the work
            bar.update(item=case.label())
            bar.write("a log line")  # printed above the bar, not through it

A library function takes ``progress=NO_PROGRESS`` (the do-nothing instance), calls
``progress.start(total)`` once it knows how many items there are and ``progress.update(item=...)``
after each, so it stays silent unless a command hands it a live one.
"""

from __future__ import annotations

import sys
from typing import IO, Iterable, Iterator, TypeVar

T = TypeVar("T")


def show_progress(json_output: bool, stdout: IO | None = None) -> bool:
    """True only for a person at a terminal: no ``--json`` and stdout is a TTY."""
    stdout = sys.stdout if stdout is None else stdout
    isatty = getattr(stdout, "isatty", None)
    return not json_output and bool(isatty and isatty())


class Progress:
    """A counter of done items out of ``total`` (None: unknown), drawn on ``stream`` when enabled."""

    def __init__(self, total: int | None, desc: str, enabled: bool, stream: IO | None = None):
        self.total, self.desc, self.enabled, self.done = total, desc, enabled, 0
        self.stream = sys.stderr if stream is None else stream
        self._bar = None
        self._width = 0
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=desc, file=self.stream, dynamic_ncols=True, leave=True,
                                 unit="run")

    def start(self, total: int | None) -> None:
        """Set the total once the caller knows it (a sweep that builds its cases itself)."""
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def update(self, n: int = 1, item: str = "") -> None:
        """``n`` more items done; ``item`` names the latest (shown beside the count)."""
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            if item:
                self._bar.set_postfix_str(item, refresh=False)
            self._bar.update(n)
            return
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        line = f"{self.desc} {count}" + (f"  {item}" if item else "")
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def write(self, message: str) -> None:
        """A log line: above the bar on a terminal, a plain stderr line otherwise."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
            return
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Silent(Progress):
    def __init__(self):
        super().__init__(None, "", enabled=False)

    def write(self, message: str) -> None:  # silent means silent: no log lines either
        pass


#: Pass where a function wants a Progress and nothing should show.
NO_PROGRESS = _Silent()


def progress(total: int | None, desc: str, *, enabled: bool | None = None, stream: IO | None = None) -> Progress:
    """A Progress; ``enabled=None`` decides by ``show_progress(False)`` (stdout a terminal)."""
    return Progress(total, desc, show_progress(False) if enabled is None else enabled, stream)


def track(items: Iterable[T], desc: str, *, total: int | None = None, enabled: bool | None = None,
          stream: IO | None = None, label=str) -> Iterator[T]:
    """Yield ``items`` and count each one after its loop body has run (``label(item)`` names it)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with progress(total, desc, enabled=enabled, stream=stream) as bar:
        for item in items:
            yield item
            bar.update(item=label(item))
