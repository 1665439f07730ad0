"""Reports for ``lakevec bench search``: aggregate repeated runs, ratios, targets, an aligned table, JSON.

- ``build_report(runs, *, dataset=None, config=None, builds=None, targets=DEFAULT_TARGETS,
  baseline="lakevec", notes=()) -> dict``. ``runs`` is one list of ``peers.run_peer`` result dicts per
  repetition (``--repeat N``); results are keyed by their ``label`` (e.g. ``"lakevec"``,
  ``"lance_ivf_flat@recall"``, ``"faiss_ivf_flat"``). The report holds:
  ``summary[label][field] = {"min", "median", "max", "n"}`` for every numeric field;
  ``ratios[label] = {"qps": {min, median, max}}``: baseline qps / peer qps, paired within each repetition;
  ``targets``: each with ``value`` (the median), ``threshold``, ``status`` ``PASS`` / ``FAIL`` / ``SKIP``
  (SKIP when a result it needs is missing); plus ``machine`` (cpu, memory, library versions) and ``runs``.
- ``format_report(report) -> str`` / ``print_report(report, file=None)``: a compact aligned table (medians,
  with the min..max of queries/s when repeated; ``cpu`` = process CPU time / wall time during the measured
  search, low values mean the peer was starved by other load), the ratios and the targets.
- ``write_json(report, path)``.
- ``Target(name, label, field, op, threshold, vs=None)``: ``vs`` (a label or a list of fallback labels)
  makes the target a ratio ``label.field / vs.field``. ``DEFAULT_TARGETS`` are the issue's: recall@10 >= 0.95
  at lakevec's default nprobe; qps >= 3x Lance's native IVF_FLAT (per-query) at equal recall; qps >= 0.5x
  faiss IVFFlat (same nlist / nprobe / threads); peak RSS of lakevec batch search <= 1.5 GB (1.5e9 bytes,
  process RSS, so run lakevec before the peers load their data).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import sys
from dataclasses import asdict, dataclass
from typing import Sequence

from .measure import fmt_bytes, summarize

REPORT_VERSION = 1


@dataclass(frozen=True)
class Target:
    name: str
    label: str
    field: str
    op: str                     # ">=" or "<="
    threshold: float
    vs: str | tuple | None = None


DEFAULT_TARGETS: tuple[Target, ...] = (
    Target("recall@10 at default nprobe >= 0.95", "lakevec", "recall", ">=", 0.95),
    Target("qps >= 3x Lance IVF_FLAT (per query) at equal recall", "lakevec", "qps", ">=", 3.0,
           vs=("lance_ivf_flat@recall", "lance_ivf_flat")),
    Target("qps >= 0.5x faiss IVFFlat (same nlist/nprobe/threads)", "lakevec", "qps", ">=", 0.5,
           vs=("faiss_ivf_flat", "faiss_ivf_flat@recall")),
    Target("peak RSS of lakevec batch search <= 1.5 GB", "lakevec", "rss_peak_bytes", "<=", 1.5e9),
)


def machine_info() -> dict:
    info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()}
    try:  # other processes on the machine make timings noisy: record the load when the report is built
        info["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        pass
    try:
        import psutil
        info["memory_bytes"] = psutil.virtual_memory().total
    except Exception:  # pragma: no cover
        pass
    for mod, attr in (("numpy", "__version__"), ("pyarrow", "__version__"), ("lance", "__version__"),
                      ("faiss", "__version__")):
        m = sys.modules.get(mod)
        if m is not None:
            info[mod] = getattr(m, attr, None)
    return info


def _by_label(run: Sequence[dict]) -> dict:
    out = {}
    for r in run:
        out[r["label"]] = r
    return out


def _resolve(labels, available):
    if labels is None:
        return None
    for lab in (labels,) if isinstance(labels, str) else labels:
        if lab in available:
            return lab
    return None


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None and math.isfinite(v)


def build_report(runs: Sequence[Sequence[dict]], *, dataset: dict | None = None, config: dict | None = None,
                 builds: dict | None = None, targets: Sequence[Target] = DEFAULT_TARGETS,
                 baseline: str = "lakevec", notes: Sequence[str] = ()) -> dict:
    """Aggregate ``runs`` (one list of result dicts per repetition) into a report dict."""
    runs = [list(r) for r in runs]
    if not runs:
        raise ValueError("build_report needs at least one run")
    per_run = [_by_label(r) for r in runs]
    labels: list[str] = []
    for r in runs:
        for res in r:
            if res["label"] not in labels:
                labels.append(res["label"])
    summary: dict = {}
    for lab in labels:
        rows = [pr[lab] for pr in per_run if lab in pr]
        fields = {f for row in rows for f, v in row.items() if _num(v)}
        s = {f: summarize([row.get(f) for row in rows if _num(row.get(f))]) for f in sorted(fields)}
        first = rows[0]
        s["_info"] = {k: first.get(k) for k in ("peer", "kind", "k", "extrapolated", "latency_source",
                                                 "target_recall", "target_reached") if k in first}
        summary[lab] = s
    ratios: dict = {}
    if baseline in labels:
        for lab in labels:
            if lab == baseline:
                continue
            vals = [pr[baseline]["qps"] / pr[lab]["qps"] for pr in per_run
                    if baseline in pr and lab in pr and pr[lab].get("qps")]
            ratios[lab] = {"qps": summarize(vals)}
    tres = []
    for t in targets:
        entry = {**asdict(t), "value": None, "status": "SKIP"}
        if isinstance(t.vs, tuple):
            entry["vs"] = list(t.vs)
        if t.label in summary and t.field in summary[t.label]:
            if t.vs is None:
                val = summary[t.label][t.field]["median"]
            else:
                vs = _resolve(t.vs, summary)
                entry["vs_resolved"] = vs
                vals = [pr[t.label][t.field] / pr[vs][t.field] for pr in per_run
                        if vs is not None and t.label in pr and vs in pr and pr[vs].get(t.field)]
                val = summarize(vals)["median"] if vals else None
            if val is not None:
                ok = val >= t.threshold if t.op == ">=" else val <= t.threshold
                entry.update({"value": val, "status": "PASS" if ok else "FAIL"})
        tres.append(entry)
    return {"report_version": REPORT_VERSION, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "dataset": dataset or {}, "config": config or {}, "machine": machine_info(),
            "builds": builds or {}, "repeat": len(runs), "baseline": baseline, "labels": labels,
            "summary": summary, "ratios": ratios, "targets": tres, "notes": list(notes), "runs": runs}


def _f(v, spec):
    return "-" if v is None else format(v, spec)


def _table(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, r in enumerate(rows):
        out.append("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_report(report: dict) -> str:
    """The report as text: header, results table, ratios, targets, notes."""
    lines = []
    ds = report.get("dataset") or {}
    if ds:
        lines.append(f"dataset: {ds.get('name', '?')}  n={ds.get('n', '?')}  dim={ds.get('dim', '?')}  "
                     f"metric={ds.get('metric', '?')}  queries={ds.get('n_queries', '?')}")
    cfg = report.get("config") or {}
    if cfg:
        lines.append("config: " + "  ".join(f"{k}={v}" for k, v in cfg.items()))
    rep = report.get("repeat", 1)
    lines.append(f"repeat: {rep} (medians{'; qps range min..max' if rep > 1 else ''})")
    hdr = ["peer", "nprobe", "recall@k", "qps", "p50 ms", "p95 ms", "1q p50 ms", "read", "peak RSS", "dRSS",
           "cpu", "note"]
    if rep > 1:
        hdr.insert(4, "qps min..max")
    rows = [hdr]
    for lab in report["labels"]:
        s = report["summary"][lab]
        med = {f: v["median"] for f, v in s.items() if f != "_info"}
        info = s["_info"]
        note = []
        if info.get("extrapolated"):
            note.append(f"qps from {int(med.get('n_measured', 0))}/{int(med.get('n_queries', 0))} queries")
        if info.get("latency_source") == "batch/m":
            note.append("lat=batch/m")
        if info.get("target_reached") is False:
            note.append("target recall NOT reached")
        row = [lab, _f(med.get("nprobe"), ".0f"), _f(med.get("recall"), ".4f"), _f(med.get("qps"), ",.0f"),
               _f(med.get("p50_ms"), ".3f"), _f(med.get("p95_ms"), ".3f"), _f(med.get("single_p50_ms"), ".3f"),
               fmt_bytes(med.get("bytes_read")), fmt_bytes(med.get("rss_peak_bytes")),
               fmt_bytes(med.get("rss_delta_bytes")), _f(med.get("cpu_util"), ".2f"), "; ".join(note)]
        if rep > 1:
            q = s.get("qps", {})
            row.insert(4, f"{_f(q.get('min'), ',.0f')}..{_f(q.get('max'), ',.0f')}")
        rows.append(row)
    lines.append(_table(rows, right=set(range(1, len(hdr) - 1))))
    if report.get("ratios"):
        lines.append("")
        lines.append(f"{report['baseline']} qps / peer qps:")
        rr = [["peer", "median", "min", "max"]]
        for lab, r in report["ratios"].items():
            q = r["qps"]
            rr.append([lab, _f(q["median"], ".2f") + "x", _f(q["min"], ".2f") + "x", _f(q["max"], ".2f") + "x"])
        lines.append(_table(rr, right={1, 2, 3}))
    if report.get("targets"):
        lines.append("")
        lines.append("targets:")
        tr = [["status", "target", "value", "threshold"]]
        for t in report["targets"]:
            v = t["value"]
            if t["field"].endswith("_bytes") and t.get("vs") is None:   # decimal GB, as the targets say
                vs = "-" if v is None else f"{v / 1e9:.3f} GB"
                th = f"{t['op']} {t['threshold'] / 1e9:g} GB"
            else:
                vs = _f(v, ".4f" if t["field"] == "recall" else ".2f")
                th = f"{t['op']} {t['threshold']}"
            name = t["name"] + (f" [vs {t['vs_resolved']}]" if t.get("vs_resolved") else "")
            tr.append([t["status"], name, vs, th])
        lines.append(_table(tr, right={2}))
    for n in report.get("notes") or []:
        lines.append(f"note: {n}")
    return "\n".join(lines)


def print_report(report: dict, file=None) -> None:
    print(format_report(report), file=file or sys.stdout)


def _jsonable(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            v = o.item()
            return None if isinstance(v, float) and not math.isfinite(v) else v
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)


def _clean(o):
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def write_json(report: dict, path) -> None:
    """Write the report as JSON (numpy scalars converted; non-finite floats as null)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(_clean(report), f, indent=1, default=_jsonable, allow_nan=False)
    os.replace(tmp, path)


__all__ = ["DEFAULT_TARGETS", "Target", "build_report", "format_report", "machine_info", "print_report",
           "write_json"]
