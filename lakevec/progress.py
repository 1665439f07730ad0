"""Progress of long library calls (``Table.add``, ``Table.build_index``, jobs), opt-in with ``progress=``.

What the user passes as ``progress=``:

- ``None`` / ``False`` (default): nothing is reported, at (almost) no cost;
- ``True``: tqdm bars, one per phase (``tqdm.auto``: widgets in a notebook, text on a terminal, on stderr);
- a callable: called with a :class:`ProgressEvent` when a phase starts, when its counts move (at most
  ``UPDATE_INTERVAL`` apart per phase), when a phase ends and when the work ends;
- a :class:`Progress` (e.g. the CLI's reporter): used as it is, so nested calls report into one display.

How library code reports (the same few calls whatever the user asked for)::

    from lakevec.progress import progress_for

    with progress_for(progress, "build_index") as p:
        p.phase("sample", total=n_sample, unit="rows")
        ...; p.advance(len(batch))
        p.phase("train", detail=f"{nlist} centroids")          # ends "sample", starts "train"
        p.phase("assign", total=rows, unit="rows")
        ...; p.advance(k)                                       # thread-safe: tasks may call it
        p.phase("commit")
    # leaving the block ends the last phase, then the work ("end", ok=False on an exception)

A phase has a name, a count ``done`` of ``total`` (None when unknown) in ``unit`` (``"rows"``,
``"files"``, ``"bytes"``...) and an optional ``detail`` text. Events carry all of it plus the task
name and the phase's elapsed seconds, so a callback can render or log them without keeping state.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

__all__ = ["Progress", "ProgressEvent", "UPDATE_INTERVAL", "progress_for"]

UPDATE_INTERVAL = 0.1  # seconds between two "update" events of one phase sent to a callback

START, UPDATE, PHASE_END, END = "phase", "update", "phase_end", "end"


@dataclass(frozen=True)
class ProgressEvent:
    """One thing that happened to a long-running call.

    ``kind``: ``"phase"`` (a phase started), ``"update"`` (its counts moved), ``"phase_end"`` (it
    finished; ``elapsed`` is its duration) or ``"end"`` (the whole call finished; ``ok`` False when it
    raised; ``phase`` is None).
    """

    task: str
    kind: str
    phase: str | None = None
    done: int = 0
    total: int | None = None
    unit: str = ""
    detail: str = ""
    elapsed: float = 0.0
    ok: bool = True

    @property
    def fraction(self) -> float | None:
        """``done / total`` in [0, 1], or None when the total is unknown."""
        if not self.total:
            return None
        return min(1.0, max(0.0, self.done / self.total))

    def describe(self) -> str:
        """A short human text: ``assign 4,000/10,000 rows (40%)`` or ``train: 87 centroids``."""
        if self.phase is None:
            return f"{self.task}: {'done' if self.ok else 'failed'}"
        if self.total:
            text = f"{self.phase} {self.done:,}/{self.total:,}{' ' + self.unit if self.unit else ''}"
            if self.kind != PHASE_END:
                text += f" ({self.fraction:.0%})"
        elif self.done:
            text = f"{self.phase} {self.done:,}{' ' + self.unit if self.unit else ''}"
        else:
            text = self.phase
        return text + (f": {self.detail}" if self.detail else "")


class Progress:
    """A reporter: the calls library code makes. This base class ignores them (``progress=None``)."""

    task = ""

    def phase(self, name: str, total: int | None = None, unit: str = "", detail: str = "") -> None:
        """End the current phase, if any, and start phase ``name``."""

    def advance(self, n: int = 1) -> None:
        """Add ``n`` to the current phase's count."""

    def update(self, done: int | None = None, total: int | None = None, detail: str | None = None) -> None:
        """Set the current phase's count, total or detail text."""

    def end_phase(self, ok: bool = True) -> None:
        """End the current phase (the next ``phase`` call or the end of the work does it too)."""

    def close(self, ok: bool = True) -> None:
        """End the current phase and the work."""

    @property
    def enabled(self) -> bool:
        return False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)


class _Reporter(Progress):
    """Keeps the state of the current phase and turns calls into events for ``_emit``."""

    def __init__(self, task: str):
        self.task = task
        self._lock = threading.Lock()
        self._phase: str | None = None
        self._done = 0
        self._total: int | None = None
        self._unit = ""
        self._detail = ""
        self._t0 = 0.0
        self._last_update = 0.0
        self._closed = False

    @property
    def enabled(self) -> bool:
        return True

    def _event(self, kind: str, ok: bool = True) -> ProgressEvent:
        return ProgressEvent(self.task, kind, self._phase, self._done, self._total, self._unit, self._detail,
                             time.monotonic() - self._t0, ok)

    def _emit(self, ev: ProgressEvent) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def phase(self, name, total=None, unit="", detail=""):
        with self._lock:
            if self._closed:
                return
            ended = self._end_locked(ok=True)
            self._phase, self._done, self._total = str(name), 0, (None if total is None else int(total))
            self._unit, self._detail = unit, detail
            self._t0 = self._last_update = time.monotonic()
            started = self._event(START)
        if ended is not None:
            self._emit(ended)
        self._emit(started)

    def advance(self, n=1):
        self._changed(lambda: setattr(self, "_done", self._done + int(n)))

    def update(self, done=None, total=None, detail=None):
        def apply():
            if done is not None:
                self._done = int(done)
            if total is not None:
                self._total = int(total)
            if detail is not None:
                self._detail = str(detail)
        self._changed(apply, force=detail is not None or total is not None)

    def _changed(self, apply, force: bool = False) -> None:
        with self._lock:
            if self._phase is None or self._closed:
                return
            apply()
            now = time.monotonic()
            if not force and now - self._last_update < UPDATE_INTERVAL and self._done != self._total:
                return
            self._last_update = now
            ev = self._event(UPDATE)
        self._emit(ev)

    def _end_locked(self, ok: bool) -> ProgressEvent | None:
        if self._phase is None:
            return None
        ev = self._event(PHASE_END, ok)
        self._phase = None
        return ev

    def end_phase(self, ok=True):
        with self._lock:
            ev = self._end_locked(ok=ok)
        if ev is not None:
            self._emit(ev)

    def close(self, ok=True):
        with self._lock:
            if self._closed:
                return
            self._closed = True
            ended = self._end_locked(ok)
            end = ProgressEvent(self.task, END, None, ok=ok)
        if ended is not None:
            self._emit(ended)
        self._emit(end)


class _Callback(_Reporter):
    """Sends every event to the user's callable."""

    def __init__(self, task: str, fn):
        super().__init__(task)
        self._fn = fn

    def _emit(self, ev):
        self._fn(ev)


class _Tqdm(_Reporter):
    """One tqdm bar per phase (``tqdm.auto``: a widget in notebooks, text on stderr elsewhere)."""

    def __init__(self, task: str):
        super().__init__(task)
        self._bar = None

    def _emit(self, ev):
        from tqdm.auto import tqdm

        try:
            if ev.kind == START:
                self._bar = tqdm(total=ev.total, desc=f"{self.task}: {ev.phase}", unit=f" {ev.unit}" if ev.unit
                                 else "it", unit_scale=bool(ev.unit), leave=True, dynamic_ncols=True)
                if ev.detail:
                    self._bar.set_postfix_str(ev.detail, refresh=False)
            elif self._bar is not None and ev.kind in (UPDATE, PHASE_END):
                if ev.total is not None and self._bar.total != ev.total:
                    self._bar.total = ev.total
                self._bar.n = ev.done
                if ev.detail:
                    self._bar.set_postfix_str(ev.detail, refresh=False)
                if ev.kind == PHASE_END:
                    if not ev.ok:
                        self._bar.leave = False
                    self._bar.close()
                    self._bar = None
                else:
                    self._bar.refresh()
        except (OSError, ValueError):  # a closed stream must never break the work
            self._bar = None


class _Borrowed(Progress):
    """The caller's reporter, lent to a nested call: its phases go there; closing ends only its phase."""

    def __init__(self, outer: Progress):
        self._outer = outer
        self.task = outer.task

    @property
    def enabled(self) -> bool:
        return self._outer.enabled

    def phase(self, name, total=None, unit="", detail=""):
        self._outer.phase(name, total, unit, detail)

    def advance(self, n=1):
        self._outer.advance(n)

    def update(self, done=None, total=None, detail=None):
        self._outer.update(done, total, detail)

    def end_phase(self, ok=True):
        self._outer.end_phase(ok)

    def close(self, ok=True):
        self._outer.end_phase(ok)


def progress_for(progress, task: str) -> Progress:
    """Return the reporter for a call whose user passed ``progress=`` (see the module doc).

    ``task`` names the work in events and bar labels (``"build_index"``, ``"add"``...).
    """
    if progress is None or progress is False:
        return Progress()
    if progress is True:
        return _Tqdm(task)
    if isinstance(progress, Progress):
        return _Borrowed(progress)
    if callable(progress):
        return _Callback(task, progress)
    from .errors import InvalidArgumentError
    raise InvalidArgumentError(f"progress must be True, False, None or a callable taking a ProgressEvent, "
                               f"got {type(progress).__name__}")
