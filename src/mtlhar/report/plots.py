"""The report's figures (matplotlib, object API: no pyplot state, no GUI backend).

Colours are the study's: every single-task baseline in one blue, each multi-task variant in its own
colour (`StudyData.colours`), the same in every figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .study import StudyData, higher_is_better, is_stl

DPI = 110


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=DPI)
    return path.name


def _label(group: str) -> str:
    return f"{group} (STL)" if is_stl(group) else f"{group} (MTL)"


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols


# -------------------------------------------------------------------------------------------------
def bar_chart(data: StudyData, split: str, path: Path) -> str | None:
    """Main metric per task: one bar per run group (mean over seeds) with its 95% interval."""
    tasks = [t for t in data.task_cfgs if any(data.entry(g, t, split) for g in data.groups_with_task(t))]
    if not tasks:
        return None
    rows, cols = _grid(len(tasks), 4)
    fig = Figure(figsize=(3.2 * cols, 3.0 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, task in zip(axes, tasks):
        groups = [g for g in data.groups_with_task(task) if data.entry(g, task, split)]
        entries = [data.entry(g, task, split) for g in groups]
        means = np.array([e["mean"] for e in entries])
        lo = np.array([e["ci_lo"] if e.get("ci_lo") is not None else e["mean"] for e in entries])
        hi = np.array([e["ci_hi"] if e.get("ci_hi") is not None else e["mean"] for e in entries])
        yerr = np.vstack([np.clip(means - lo, 0, None), np.clip(hi - means, 0, None)])
        x = np.arange(len(groups))
        ax.bar(x, means, color=[data.colours[g] for g in groups], yerr=yerr, capsize=4, width=0.65)
        for xi, m, h in zip(x, means, np.maximum(hi, means)):  # above the interval's cap, not on it
            ax.annotate(
                f"{m:.3f}",
                (xi, h),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
            )
        metric = data.main_metric(task)
        tilt = len(groups) > 2
        ax.set_xticks(
            x,
            [("STL" if is_stl(g) else g) for g in groups],
            rotation=25 if tilt else 0,
            ha="right" if tilt else "center",
            rotation_mode="anchor",
        )
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_ylabel(f"{metric} ({'higher' if higher_is_better(metric) else 'lower'} is better)")
        ax.set_title(f"{task} ({data.role(task)})", fontsize=10)
        chance = data.chance(task)
        top = max(float(hi.max()), float(means.max()), chance or 0.0)
        ax.set_ylim(0, top * 1.25 if top > 0 else 1)  # room for the labels above the highest cap
        if chance is not None:
            _chance_line(ax, chance)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(tasks) :]:
        ax.set_visible(False)
    fig.suptitle(f"{split}: main metric per task, mean over seeds, bars = 95% CI")
    return _save(fig, path)


def _chance_line(ax, chance: float) -> None:
    """A dashed line at the chance level (1 / number of classes), labelled at its right end."""
    lo, hi = ax.get_ylim()
    pad = 0.08 * (max(hi, chance) - min(lo, chance) or 1.0)
    if chance + pad > hi or chance - pad < lo:  # keep the line and its label inside the axes
        ax.set_ylim(min(lo, chance - pad), max(hi, chance + pad))
    ax.axhline(chance, color="#6e7781", ls="--", lw=1, zorder=3)
    ax.annotate(
        f"chance 1/{round(1 / chance)}",
        (1, chance),
        xycoords=("axes fraction", "data"),
        xytext=(-2, 2),
        textcoords="offset points",
        ha="right",
        va="bottom",
        fontsize=7,
        color="#57606a",
        bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
        zorder=4,
    )


# -------------------------------------------------------------------------------------------------
def _seed_mean(steps_per_seed: list[list[int]], values_per_seed: list[list[float]]):
    """Mean (and min/max) over seeds at each step logged by any seed."""
    steps = sorted({s for st in steps_per_seed for s in st})
    index = {s: i for i, s in enumerate(steps)}
    grid = np.full((len(values_per_seed), len(steps)), np.nan)
    for k, (st, vals) in enumerate(zip(steps_per_seed, values_per_seed)):
        for s, v in zip(st, vals):
            grid[k, index[s]] = v
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.array(steps), np.nanmean(grid, 0), np.nanmin(grid, 0), np.nanmax(grid, 0)


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(y) < window:
        return y
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, y[0]), y])
    return np.convolve(padded, kernel, mode="valid")


def smoothing_window(data: StudyData) -> int:
    n = max((len(data.curves(r).train_steps) for runs in data.groups.values() for r in runs), default=0)
    return max(1, n // 50)


def learning_curves(data: StudyData, task: str, path: Path) -> str | None:
    """Train loss (left) and validation main metric (right) of `task` per run group, mean over seeds."""
    groups = data.groups_with_task(task)
    metric = data.main_metric(task)
    window = smoothing_window(data)
    fig = Figure(figsize=(10, 3.3), layout="constrained")
    ax_loss, ax_val = fig.subplots(1, 2)
    drawn = False
    for g in groups:
        curves = [data.curves(r) for r in data.groups[g]]
        loss = [(c.train_steps, c.loss[task]) for c in curves if task in c.loss]
        if loss:
            s, m, lo, hi = _seed_mean([a for a, _ in loss], [b for _, b in loss])
            ax_loss.plot(s, _smooth(m, window), color=data.colours[g], label=_label(g), lw=1.5)
            if len(loss) > 1:
                ax_loss.fill_between(
                    s, _smooth(lo, window), _smooth(hi, window), color=data.colours[g], alpha=0.15, lw=0
                )
            drawn = True
        val = [(c.val_steps, c.val[task][metric]) for c in curves if metric in c.val.get(task, {})]
        if val:
            s, m, lo, hi = _seed_mean([a for a, _ in val], [b for _, b in val])
            ax_val.plot(s, m, color=data.colours[g], label=_label(g), lw=1.5, marker="o", ms=3)
            if len(val) > 1:
                ax_val.fill_between(s, lo, hi, color=data.colours[g], alpha=0.15, lw=0)
            drawn = True
    if not drawn:
        return None
    ax_loss.set_title(
        f"{task}: training loss" + (f" (moving mean over {window} steps)" if window > 1 else ""), fontsize=10
    )
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_val.set_title(f"{task}: validation {metric}", fontsize=10)
    ax_val.set_xlabel("step")
    ax_val.set_ylabel(f"{metric} ({'higher' if higher_is_better(metric) else 'lower'} is better)")
    chance = data.chance(task)
    if chance is not None:
        _chance_line(ax_val, chance)
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
    ax_val.legend(fontsize=8, loc="best")
    return _save(fig, path)


def weights_figure(data: StudyData, path: Path) -> str | None:
    """Balancer task weights over training, one panel per multi-task group (mean over seeds)."""
    groups = [g for g in data.mtl_groups if any(data.curves(r).weights for r in data.groups[g])]
    if not groups:
        return None
    rows, cols = _grid(len(groups), 2)
    fig = Figure(figsize=(5.2 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    task_colours = _task_colours(list(data.task_cfgs))
    for ax, g in zip(axes, groups):
        curves = [data.curves(r) for r in data.groups[g]]
        tasks = list(dict.fromkeys(t for c in curves for t in c.weights))
        for t in tasks:
            w = [(c.train_steps, c.weights[t]) for c in curves if t in c.weights]
            s, m, _, _ = _seed_mean([a for a, _ in w], [b for _, b in w])
            ax.plot(s, m, label=t, color=task_colours.get(t), lw=1.5)
        ax.set_title(f"{g}: task weights", fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("weight")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    for ax in axes[len(groups) :]:
        ax.set_visible(False)
    return _save(fig, path)


def _task_colours(tasks: list[str]) -> dict[str, str]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {t: cmap(i % 10) for i, t in enumerate(tasks)}


# -------------------------------------------------------------------------------------------------
def _heatmap(
    ax, matrix: np.ndarray, rows: list[str], cols: list[str], *, cmap, vmin, vmax, fmt: str, annotate: bool
):
    im = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax)
    small = max(len(rows), len(cols)) > 12
    ax.set_xticks(
        range(len(cols)),
        cols,
        rotation=90 if max(map(len, cols), default=0) > 3 else 0,
        fontsize=6 if small else 8,
    )
    ax.set_yticks(range(len(rows)), rows, fontsize=6 if small else 8)
    if annotate:
        mid = (vmin + vmax) / 2
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                v = matrix[i, j]
                if np.isfinite(v):
                    colour = "white" if (v > mid if cmap == "Blues" else abs(v) > 0.6 * vmax) else "black"
                    ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7, color=colour)
    return im


def confusion_figure(panels: list[tuple[str, np.ndarray]], classes: list[str], task: str, path: Path) -> str:
    """Row-normalised confusion matrices side by side (rows: true class, columns: predicted class)."""
    c = len(classes)
    side = min(9.0, max(3.0, 0.32 * c + 1.6))
    fig = Figure(figsize=(side * len(panels) + 0.8, side + 0.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False).ravel()
    im = None
    for ax, (title, cm) in zip(axes, panels):
        cm = np.asarray(cm, dtype=float)
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        im = _heatmap(ax, norm, classes, classes, cmap="Blues", vmin=0, vmax=1, fmt=".2f", annotate=c <= 10)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="fraction of the true class")
    fig.suptitle(f"{task}: confusion (row-normalised)")
    return _save(fig, path)


def affinity_figure(aff: dict, title: str, path: Path) -> str:
    tasks = aff["tasks"]
    n = len(tasks)
    side = max(3.2, 0.5 * n + 1.8)
    fig = Figure(figsize=(2 * side + 1.2, side), layout="constrained")
    a1, a2 = fig.subplots(1, 2)
    cos = np.asarray(aff["gradient_cosine"], dtype=float)
    look = np.asarray(aff["lookahead"], dtype=float)
    im1 = _heatmap(a1, cos, tasks, tasks, cmap="RdBu", vmin=-1, vmax=1, fmt=".2f", annotate=n <= 10)
    a1.set_title("gradient cosine (row task vs column task)", fontsize=9)
    fig.colorbar(im1, ax=a1, shrink=0.8)
    lim = float(np.nanmax(np.abs(look))) if look.size and np.isfinite(look).any() else 1.0
    lim = lim or 1.0
    im2 = _heatmap(a2, look, tasks, tasks, cmap="RdBu", vmin=-lim, vmax=lim, fmt=".3f", annotate=n <= 10)
    a2.set_title("lookahead: step on row task, change of column task's loss", fontsize=9)
    a2.set_xlabel("affected task")
    a2.set_ylabel("task stepped on")
    fig.colorbar(im2, ax=a2, shrink=0.8)
    fig.suptitle(title)
    return _save(fig, path)


def bands_figure(band: dict, path: Path) -> str:
    """Macro-F1 per frequency band, one bar per run group; per-class F1 against training frequency."""
    fig = Figure(figsize=(10, 3.3), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    groups, colours = band["groups"], band["colours"]
    names = [b["name"] for b in band["bands"]]
    width = 0.8 / len(groups)
    for k, (g, col) in enumerate(zip(groups, colours)):
        vals = [b["f1"][k] if b["f1"][k] is not None else np.nan for b in band["bands"]]
        x = np.arange(len(names)) + (k - (len(groups) - 1) / 2) * width
        ax.bar(x, vals, width=width, color=col, label=_label(g))
    ax.set_xticks(
        range(len(names)),
        [
            f"{b['name']}\n({b['n_classes']} class{'es' if b['n_classes'] != 1 else ''})"
            for b in band["bands"]
        ],
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("macro-F1 of the band")
    ax.set_title(f"{band['task']}: macro-F1 by training-frequency band", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    freq = np.asarray(band["freq"])
    for g, col in zip(groups, colours):
        if g in band["per_class"]:
            ax2.scatter(freq, band["per_class"][g], color=col, s=18, alpha=0.8, label=_label(g))
    for q in (band["e1"], band["e2"]):
        ax2.axvline(q + 0.5, color="grey", ls="--", lw=0.8)
    ax2.set_xlabel("training clips of the class")
    ax2.set_ylabel("per-class F1")
    ax2.set_ylim(-0.05, 1.05)
    ax2.set_title("per-class F1 vs frequency (dashed: band edges)", fontsize=10)
    ax2.grid(alpha=0.3)
    return _save(fig, path)


def transfer_figure(entries: list[dict], path: Path) -> str | None:
    """Transfer by source task: target main metric per source (mean over seeds, 95% interval), one panel
    per (probe, test split); sources in the order the study lists them (coarse to fine for the
    granularity study)."""
    rows = [e for e in entries if e.get("mean") is not None]
    if not rows:
        return None
    panels = list(dict.fromkeys((e["probe"], e.get("split", "test")) for e in rows))
    n_sources = len({e["source"] for e in rows})
    rows_, cols = _grid(len(panels), 2)
    fig = Figure(figsize=(5.2 * cols, (0.4 * n_sources + 1.3) * rows_), layout="constrained")
    axes = fig.subplots(rows_, cols, squeeze=False).ravel()
    for ax, (probe, split) in zip(axes, panels):
        es = [e for e in rows if e["probe"] == probe and e.get("split", "test") == split]
        y = np.arange(len(es))
        mean = np.array([e["mean"] for e in es])
        lo = np.array([e["ci_lo"] if e.get("ci_lo") is not None else e["mean"] for e in es])
        hi = np.array([e["ci_hi"] if e.get("ci_hi") is not None else e["mean"] for e in es])
        ax.barh(y, mean, color="#4C72B0", alpha=0.85)
        ax.errorbar(mean, y, xerr=[mean - lo, hi - mean], fmt="none", ecolor="#222", capsize=3, lw=1)
        ax.set_yticks(y, [e["source"] for e in es])
        ax.invert_yaxis()
        ax.set_xlim(0, max(1.0, float(hi.max()) * 1.05))
        ax.set_xlabel(f"target {es[0].get('target', '')} {es[0].get('metric', '')}")
        ax.set_title(f"probe: {probe}, {split}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return _save(fig, path)
