"""`mtlhar report DIR`: one self-contained HTML page about a study (the demo is a study).

The page (DIR/report/index.html, figures as sibling PNGs) answers "does multi-task learning help here?"
from the study's paired tests and delta_m, then shows the evidence: results with intervals, per-task
charts, learning curves, confusion matrices, per-class F1 by training-frequency band, the cross-domain
drop, transfer by source task (when the study has a `transfer` section), balancer weights, task
affinity, a gallery of test clips with Grad-CAM, compute and provenance.
A "Warnings" box near the top says where the evidence is weak (`evidence.warnings`: one seed,
undertrained runs, a memorised auxiliary task, every run at the ceiling or at chance), and sections that do
not apply (long-tail bands on balanced classes, the video gallery for runs that read no RGB video) are
left out with the reason said once.

>>> from mtlhar.report import build_report
>>> build_report("mtlhar-demo")  # doctest: +SKIP
PosixPath('mtlhar-demo/report/index.html')
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from ..config import TaskConfig
from . import evidence, plots, tables
from .gallery import build_gallery
from .study import StudyData

__all__ = ["build_report"]


def build_report(study_dir: str | Path, out: str | Path | None = None, *, gallery_clips: int = 6) -> Path:
    """Write the report of the study in `study_dir` into `out` (default STUDY_DIR/report/).

    Returns the path of index.html. Figures are written next to it; an existing report there is replaced.
    """
    data = StudyData(study_dir)
    out = Path(out) if out is not None else data.dir / "report"
    if out.exists():
        for old in out.glob("*.png"):
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    context = build_context(data, out, gallery_clips=gallery_clips)
    html = _render(context)
    path = out / "index.html"
    tmp = path.with_name(".index.html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


def _band_tables(data: StudyData) -> tuple[list[dict], list[str]]:
    """(the frequency bands worth showing, a reason for each task left out): a task is left out when its
    training classes are balanced (`tables.BALANCED_RATIO`) or fewer than two bands hold a class; empty
    bands are dropped (no "head: 0 classes")."""
    shown, left_out = [], []
    for b in tables.frequency_bands(data):
        if b["balanced"]:
            left_out.append(
                f"long-tail bands for {b['task']}: its training classes are balanced "
                f"({b['min_n']}–{b['max_n']} clips per class)"
            )
            continue
        b["bands"] = [x for x in b["bands"] if x["n_classes"]]
        if len(b["bands"]) < 2:
            left_out.append(f"long-tail bands for {b['task']}: all its classes fall into one band")
            continue
        shown.append(b)
    return shown, left_out


def _figures(data: StudyData, out: Path, bands: list[dict]) -> tuple[dict, str]:
    """Draw every figure but the gallery's: (figures by section, the confusion note)."""
    figures: dict = {"bars": [], "curves": [], "confusion": [], "bands": [], "affinity": []}
    for i, split in enumerate(data.splits):
        name = plots.bar_chart(data, split, out / f"bars_{i}_{_safe(split)}.png")
        if name:
            figures["bars"].append({"split": split, "src": name})
    for task in data.task_cfgs:
        name = plots.learning_curves(data, task, out / f"curves_{_safe(task)}.png")
        if name:
            figures["curves"].append({"task": task, "src": name})
    figures["weights"] = plots.weights_figure(data, out / "weights.png")
    figures["confusion"], confusion_note = _confusions(data, out)
    for b in bands:
        b["src"] = plots.bands_figure(b, out / f"bands_{_safe(b['task'])}.png")
    for i, (group, aff) in enumerate(data.affinity.items()):
        title = f"task affinity of {group} (mean over {aff.get('n_measurements', '?')} measurements)"
        figures["affinity"].append(
            {
                "group": group,
                "src": plots.affinity_figure(aff, title, out / f"affinity_{i}.png"),
                "groups": aff.get("suggested_groups"),
            }
        )
    top1 = [e for e in data.results.get("transfer") or [] if e.get("metric") == "top1"]
    figures["transfer"] = plots.transfer_figure(top1, out / "transfer.png") if top1 else None
    return figures, confusion_note


def _left_out(gallery: dict, band_reasons: list[str]) -> list[str]:
    """The sections that do not apply to this study, each with the reason (said once, near the top)."""
    out = list(band_reasons)
    if not gallery.get("applies", True):
        out.append(
            f"gallery of video frames and Grad-CAM: {gallery['run']} reads "
            f"{', '.join(gallery.get('sources') or ['?'])}, not RGB video"
        )
    return out


def _chance_notes(data: StudyData) -> list[str]:
    out = []
    for task in data.task_cfgs:
        c = data.chance(task)
        if c is not None:
            out.append(f"{task} {data.main_metric(task)} 1/{round(1 / c)} = {c:.3f}")
    return out


def build_context(data: StudyData, out: Path, *, gallery_clips: int = 6) -> dict:
    """Compute every table and draw every figure; returns the template's variables."""
    bands, band_reasons = _band_tables(data)
    figures, confusion_note = _figures(data, out, bands)
    gallery = build_gallery(data, out, n_clips=gallery_clips)
    transfer = data.results.get("transfer") or []
    results_json = data.dir / "results.json"
    rel = Path(_relpath(results_json, out))
    return {
        "study": data.name,
        "generated": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "splits": data.splits,
        "first_split": data.first_split,
        "settings": data.results.get("settings", {}),
        "dataset": data.results.get("dataset", {}),
        "wall_time_s": data.results.get("wall_time_s"),
        "runs_wall_time_s": data.results.get("runs_wall_time_s"),
        "groups": [
            {
                "name": g,
                "kind": "STL" if g in data.stl_groups else "MTL",
                "colour": data.colours[g],
                "runs": runs,
            }
            for g, runs in data.groups.items()
        ],
        "tasks": [
            {
                "name": n,
                "role": data.role(n),
                "metric": data.main_metric(n),
                "kind": t.get("kind", TaskConfig.kind),
            }
            for n, t in data.task_cfgs.items()
        ],
        "verdicts": tables.verdicts(data),
        "alpha": tables.ALPHA,
        "delta_m_rows": tables.delta_m_rows(data),
        "delta_m_convention": data.results.get("delta_m_convention", ""),
        "test_rows": tables.test_rows(data),
        "reference": data.results.get("reference"),
        "reference_rows": tables.reference_rows(data),
        "tests_method": data.results.get("tests_method", "paired test, Holm-corrected"),
        "main_rows": tables.main_rows(data),
        "full_rows": tables.full_rows(data),
        "cross_rows": tables.cross_domain_rows(data),
        "split_domains": tables.split_domains(data),
        "bands": bands,
        "bands_note": None if data.manifest is not None else f"manifest {data.manifest_path} not found",
        "figures": figures,
        "confusion_note": confusion_note,
        "smoothing": plots.smoothing_window(data),
        "gallery": gallery,
        "warnings": evidence.warnings(data),
        "n_seeds": data.n_seeds,
        "left_out": _left_out(gallery, band_reasons),
        "chance_notes": _chance_notes(data),
        "transfer_rows": transfer,
        "transfer_answer": data.results.get("transfer_answer"),
        "compute_rows": tables.compute_rows(data),
        "tuning": data.results.get("tuning"),
        "provenance_rows": tables.provenance_rows(data),
        "results_link": rel.as_posix(),
    }


def _confusions(data: StudyData, out: Path) -> tuple[list[dict], str]:
    """Confusion matrices of every task whose kind has one (`TaskKind.confusion`): first-seed STL baseline
    and the first seed of the first group trained on several tasks (else of the first other variant, e.g. a
    single-task loss)."""
    split = data.first_split
    firsts = [data.groups[g][0] for g in data.mtl_groups]
    multi = [r for r in firsts if len(data.tasks_of(r)) > 1]
    mtl_run = (multi or firsts or [None])[0]
    mtl_kind = "MTL" if multi else "variant"
    items = []
    for task in data.task_cfgs:
        panels, classes = [], None
        candidates = []
        if data.stl_group_for(task):
            candidates.append(data.groups[data.stl_group_for(task)][0])
        if mtl_run:
            candidates.append(mtl_run)
        for run in candidates:
            ev = data.evaluation(run, split)
            cm = (ev or {}).get("confusion", {}).get(task)
            t = data.tasks_of(run).get(task)
            if cm is None or t is None or not t.classes:
                continue
            classes = t.classes
            kind = "STL" if run != mtl_run else mtl_kind
            panels.append((f"{kind}: {run}", cm))
        if panels and classes:
            src = plots.confusion_figure(panels, classes, task, out / f"confusion_{_safe(task)}.png")
            items.append({"task": task, "src": src, "runs": [p[0] for p in panels]})
    note = f"split {split}; rows are true classes and sum to 1; first seed of each run group"
    return items, note


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _relpath(target: Path, start: Path) -> str:
    return os.path.relpath(target.resolve(), start.resolve())


def _render(context: dict) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["signed"] = lambda v, d=3: _num(v, d, sign=True)
    env.filters["pval"] = _pval
    env.globals["cell"] = _cell
    env.globals["std_cell"] = _std_cell
    return env.get_template("report.html.j2").render(**context)


def _num(value, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "—"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v != v:  # NaN
        return "—"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _cell(value, digits: int = 3, sign: bool = False, p: bool = False):
    """A table cell: class "num" holds a number that parses as a float; "na" holds a dash."""
    from markupsafe import Markup

    text = _pval(value) if p else _num(value, digits, sign)
    if text == "—":
        return Markup('<td class="na">—</td>')
    return Markup('<td class="num">{}</td>').format(text)


def _std_cell(value, n_seeds, digits: int = 3):
    """The std over seeds, or "n/a (1 seed)" where one seed has no spread (not a misleading 0.000)."""
    from markupsafe import Markup

    if n_seeds is not None and int(n_seeds) == 1:
        return Markup('<td class="one-seed">n/a (1 seed)</td>')
    return _cell(value, digits)


def _pval(value) -> str:
    if value is None:
        return "—"
    v = float(value)
    return f"{v:.2e}" if v < 1e-3 else f"{v:.4f}"
