"""How a command's long steps show on stderr: tqdm bars on a terminal, one line per finished phase in logs.

A :class:`Step` is one step of a command (``with common.progress(args, "building the index") as step``).
It is also a ``lakevec.progress.Progress`` reporter: hand it to a library call (``progress=step``) and the
call's phases (sample, train, assign...) show inside the step.

Modes (``common.progress_mode``):

- ``"tty"``: a live tqdm line: ``label: phase  40%|████      | 4,000/10,000 rows [00:03<00:04]`` (or the
  elapsed time and a status text when nothing is counted), redrawn in place; each finished phase and the
  finished step leave one line above it.
- ``"lines"`` (not a terminal, ``--json``): nothing live; one line per finished phase and per finished step:
  ``lakevec: building the index of 'docs': assign 10,000/10,000 rows in 3.21s``.
- ``"off"`` (``--quiet``): nothing.

A step that fails prints nothing (its live line is erased): the command's one ``lakevec: error:`` line is
then the last line on stderr.
"""
from __future__ import annotations

import sys
import threading
import time

from ..progress import END, PHASE_END, ProgressEvent, _Reporter

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar:24}| {n_fmt}/{total_fmt}{unit} [{elapsed}<{remaining}]{postfix}"
PLAIN_FORMAT = "{desc}  {elapsed}{postfix}"


def fmt_seconds(s: float) -> str:
    """Return ``0.42s``, ``12.3s`` or ``3m05s``."""
    if s < 10:
        return f"{s:.2f}s"
    if s < 60:
        return f"{s:.1f}s"
    return f"{int(s // 60)}m{int(s % 60):02d}s"


class Step(_Reporter):
    """One step of a command, reported on ``stream`` (default stderr) in ``mode``; see the module doc."""

    def __init__(self, label: str, mode: str = "lines", stream=None, interval: float = 0.5, status=None):
        super().__init__(label)
        self.label = label
        self.mode = mode
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.seconds = 0.0
        self.phases: list[ProgressEvent] = []  # finished phases, in order
        self._status = ""
        self._status_fn = status  # optional callable returning a status text, polled while live
        self._start = 0.0
        self._bar = None
        self._bar_lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the step's own status ---------------------------------------------------------------
    def update(self, done=None, total=None, detail=None) -> None:
        """``update("3 files")`` sets the step's status text; ``update(done=, total=, detail=)`` moves the
        current phase (as for any ``Progress`` reporter)."""
        if isinstance(done, str):
            self._status = done
            self._redraw()
            return
        super().update(done, total, detail)

    def status(self) -> str:
        if self._status_fn is not None:
            try:
                return self._status_fn() or self._status
            except Exception:  # a status probe must never break the work
                pass
        return self._status

    # -- rendering ---------------------------------------------------------------------------
    def _write_line(self, text: str) -> None:
        if self.mode == "off":
            return
        try:
            with self._bar_lock:
                if self._bar is not None:
                    self._bar.clear()
                self.stream.write(text + "\n")
                self.stream.flush()
                if self._bar is not None:
                    self._bar.refresh()
        except (OSError, ValueError):
            pass

    def _new_bar(self):
        from tqdm import tqdm

        return tqdm(total=None, desc=self.label, file=self.stream, bar_format=PLAIN_FORMAT, leave=False,
                    dynamic_ncols=True, mininterval=0.1, unit="")

    def _redraw(self) -> None:
        """Draw the live line from the current state: the phase with its counts, or the step's status."""
        if self.mode != "tty":
            return
        phase, done, total, unit, detail = self._phase, self._done, self._total, self._unit, self._detail
        try:
            with self._bar_lock:
                bar = self._bar
                if bar is None:
                    return
                if phase is not None and total:
                    if bar.total != total or bar.bar_format != BAR_FORMAT:
                        bar.reset(total=total)
                        bar.bar_format = BAR_FORMAT
                        bar.unit = f" {unit}" if unit else ""
                    bar.n = min(done, total)
                elif bar.total is not None or bar.bar_format != PLAIN_FORMAT:
                    bar.reset(total=None)
                    bar.bar_format = PLAIN_FORMAT
                bar.set_description_str(f"{self.label}: {phase}" if phase is not None else self.label, refresh=False)
                text = (detail if phase is not None else "") or self.status()
                bar.set_postfix_str(f"  {text}" if text else "", refresh=False)
                bar.refresh()
        except (OSError, ValueError):
            pass

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self._redraw()

    def _emit(self, ev: ProgressEvent) -> None:
        if ev.kind == PHASE_END:
            self.phases.append(ev)
            if ev.ok:
                self._write_line(f"lakevec: {self.label}: {ev.describe()} in {fmt_seconds(ev.elapsed)}")
        if ev.kind != END:
            self._redraw()

    # -- the step as a context manager -------------------------------------------------------
    def __enter__(self) -> "Step":
        self._start = time.monotonic()
        if self.mode == "tty":
            try:
                self._bar = self._new_bar()
                self._redraw()
            except (OSError, ValueError):
                self._bar = None
            self._thread = threading.Thread(target=self._tick, name="lakevec-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        ok = exc_type is None
        self.seconds = time.monotonic() - self._start
        self.close(ok=ok)  # ends the current phase (its line, when it went well)
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        with self._bar_lock:
            bar, self._bar = self._bar, None
            if bar is not None:
                try:
                    bar.leave = False
                    bar.close()  # erases the live line
                except (OSError, ValueError):
                    pass
        if ok and self.mode != "off":
            status = self.status()
            self._write_line(f"lakevec: {self.label}: done in {fmt_seconds(self.seconds)}"
                             + (f" ({status})" if status else ""))
        # a failed or interrupted step prints nothing: the command's error line follows
