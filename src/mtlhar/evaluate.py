"""Evaluation: every task's metrics on any split (or another dataset), confusion matrices, and the
validation multi-task score used to select a run's one checkpoint.

The validation score is the mean over primary tasks of their main metric, negated where lower is better
(so higher is always better). It needs no single-task baseline, which does not exist while training;
the multi-task score against baselines (delta_m, lower is better) is computed in `mtlhar.demo`/studies.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import checkpoint as ckpt
from . import metrics as M
from .config import RunConfig, from_dict
from .data.dataset import ClipDataset, Views, collate
from .data.manifest import Manifest
from .errors import DataError
from .tasks import Task, task_from_dict


def validation_score(metrics: dict, tasks: Sequence[Task]) -> float:
    vals = []
    for t in tasks:
        if t.role != "primary":
            continue
        v = metrics.get(t.name, {}).get(t.main_metric)
        if v is not None:
            vals.append(v if t.higher_is_better else -v)
    return float(np.mean(vals)) if vals else -float("inf")


@torch.no_grad()
def predict_outputs(
    model, dataset: ClipDataset, *, device, batch_size=32, num_workers=0, amp=False, amp_dtype=torch.bfloat16
) -> dict:
    """Run the model over a dataset; returns per-task outputs, targets, masks (numpy) and ids.

    A dataset with several views per clip (`dataset.views`: test_clips x test_crops) sends every view
    through the model in the normal batches and returns one output per clip, averaged over its views
    (`average_views`).
    """
    model.eval()
    views = getattr(dataset, "views", 1)
    loader = DataLoader(
        dataset if views == 1 else Views(dataset),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=collate,
        num_workers=num_workers,
    )
    outs: dict[str, list] = {t.name: [] for t in dataset.tasks}
    tgts: dict[str, list] = {t.name: [] for t in dataset.tasks}
    msks: dict[str, list] = {t.name: [] for t in dataset.tasks}
    ids, rows, bad = [], [], []
    for batch in loader:
        bad += batch["meta"]["bad"]
        if batch["size"] == 0:
            continue
        inputs = {k: v.to(device) for k, v in batch["inputs"].items()}
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            out = model(inputs, mode="eval")
        for name in outs:
            outs[name].append(out.heads[name].output.float().cpu().numpy())
            tgts[name].append(batch["targets"][name].numpy())
            msks[name].append(batch["mask"][name].numpy())
        ids += batch["meta"]["ids"]
        rows += batch["meta"]["rows"]
    cat = lambda d: {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in d.items()}  # noqa: E731
    pred = {"outputs": cat(outs), "targets": cat(tgts), "masks": cat(msks), "ids": ids, "bad": bad}
    if views > 1:
        pred = _merge_views(pred, rows, dataset.tasks)
    return pred


def average_views(task: Task, outputs: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """One output per clip from the outputs of its views (rows `starts[i]` up to `starts[i + 1]`), as the
    task's kind averages them (`TaskKind.average_views`): classification the mean softmax probabilities
    (returned as their log), multilabel the mean sigmoid probabilities (as logits), regression the mean
    values, captions the first view."""
    return task.spec.average_views(task, outputs, starts)


def _merge_views(pred: dict, rows: list[int], tasks: Sequence[Task]) -> dict:
    """Per-view predictions -> per-clip ones; the views of a clip are consecutive (`Views` order)."""
    r = np.asarray(rows)
    starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]]) if len(r) else np.zeros(0, np.int64)
    out = {"outputs": {}, "targets": {}, "masks": {}}
    for t in tasks:
        o = pred["outputs"][t.name]
        out["outputs"][t.name] = average_views(t, o, starts) if len(starts) else o
        for key in ("targets", "masks"):
            out[key][t.name] = pred[key][t.name][starts] if len(starts) else pred[key][t.name]
    seen, bad = set(), []
    for b in pred["bad"]:  # a clip that cannot be read fails in every view: list it once
        if b["id"] not in seen:
            seen.add(b["id"])
            bad.append({k: v for k, v in b.items() if k != "view"})
    return {**out, "ids": [pred["ids"][s] for s in starts], "bad": bad}


def metrics_from_outputs(pred: dict, tasks: Sequence[Task], *, split: str | None = None) -> dict:
    """Every task's metrics; DataError when a task's outputs hold NaN or infinite values."""
    res = {}
    for t in tasks:
        out, tgt, msk = pred["outputs"][t.name], pred["targets"][t.name], pred["masks"][t.name]
        if len(out) == 0:
            continue
        if np.issubdtype(out.dtype, np.floating) and not np.isfinite(out).all():
            rows = ~np.isfinite(out.reshape(len(out), -1)).all(1)
            first = pred["ids"][int(np.flatnonzero(rows)[0])] if len(pred["ids"]) == len(out) else "?"
            where = f" of split {split!r}" if split else ""
            raise DataError(
                f"task {t.name!r}: the model's outputs for {int(rows.sum())} of {len(out)} clips{where} are NaN "
                f"or infinite (first: {first}); the weights or the inputs are out of range"
            )
        m = msk.reshape(len(msk), -1)
        if m.shape[1] == 1:  # per-sample mask
            m = m[:, 0]
        res[t.name] = t.spec.metrics(t, out, tgt, m)
    for t in tasks:  # hierarchies: consistency, mistake severity, hierarchical distance@k (on the finer task)
        parent = (t.hierarchy or {}).get("parent")
        if parent in pred["outputs"] and len(pred["outputs"][t.name]) and t.name in res:
            coarse = next(x for x in tasks if x.name == parent)
            index = [coarse.index[t.hierarchy["map"][c]] for c in t.classes]
            fine_mask = pred["masks"][t.name].reshape(len(pred["masks"][t.name]), -1)[:, 0]
            outs = pred["outputs"]
            res[t.name].update(
                M.hierarchy_metrics(outs[t.name], outs[parent], pred["targets"][t.name], fine_mask, index)
            )
    return res


def confusions(pred: dict, tasks: Sequence[Task]) -> dict[str, list]:
    """The confusion matrix of every task whose kind has one (`TaskKind.confusion`)."""
    res = {}
    for t in tasks:
        if len(pred["outputs"][t.name]):
            cm = t.spec.confusion(t, pred["outputs"][t.name], pred["targets"][t.name], pred["masks"][t.name])
            if cm is not None:
                res[t.name] = cm.tolist()
    return res


def evaluate_model(
    model,
    dataset: ClipDataset,
    tasks: Sequence[Task],
    *,
    device,
    batch_size=32,
    num_workers=0,
    amp=False,
    amp_dtype=torch.bfloat16,
    with_confusion=False,
    keep_predictions=False,
    split: str | None = None,
) -> dict:
    pred = predict_outputs(
        model,
        dataset,
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        amp=amp,
        amp_dtype=amp_dtype,
    )
    res = {
        "metrics": metrics_from_outputs(pred, tasks, split=split),
        "n": len(pred["ids"]),
        "bad": pred["bad"],
    }
    if with_confusion:
        res["confusion"] = confusions(pred, tasks)
    if keep_predictions:
        res["predictions"] = pred
    return res


def save_predictions(pred: dict, path: Path) -> None:
    """Per-clip outputs, targets and masks of every task (for bootstrap intervals and paired tests)."""
    arrays = {"ids": np.asarray(pred["ids"])}
    for key in ("outputs", "targets", "masks"):
        for task, arr in pred[key].items():
            arrays[f"{key}/{task}"] = arr
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_predictions(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        pred: dict = {"ids": z["ids"].tolist(), "outputs": {}, "targets": {}, "masks": {}}
        for name in z.files:
            if "/" in name:
                key, task = name.split("/", 1)
                pred[key][task] = z[name]
    return pred


def load_run(run_dir: str | Path, *, device: torch.device | None = None, checkpoint: str = "best"):
    """Load a trained run: (model, tasks, config). `checkpoint` is 'best' (default) or 'last'."""
    from .build import build_model

    run_dir = Path(run_dir)
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if not path.is_file():
        raise DataError(
            f"{run_dir}: no {checkpoint} checkpoint at {path} (is this a finished mtlhar run directory?)"
        )
    ck = ckpt.load(path)
    if not isinstance(ck, dict) or not {"config", "tasks", "model"} <= set(ck):
        raise DataError(f"{path}: not an mtlhar checkpoint (it lacks config, tasks or model)")
    cfg = from_dict(RunConfig, ck["config"])
    tasks = [task_from_dict(d) for d in ck["tasks"]]
    model = build_model(cfg, tasks)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise DataError(
            f"{path}: the weights do not fit the model its config builds ({str(e).splitlines()[0]})"
        ) from None
    device = device or torch.device("cpu")
    return model.to(device).eval(), tasks, cfg


def evaluate_run(
    run_dir: str | Path,
    *,
    split: str = "test",
    data: RunConfig | None = None,
    device: torch.device | None = None,
    batch_size: int = 32,
) -> dict:
    """Metrics of a run's selected checkpoint on `split` of its own data, or of the data in `data`.

    With another dataset, tasks are matched by name and must use the same label spaces (class names).
    """
    from .build import make_dataset, prepare_data

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, tasks, cfg = load_run(run_dir, device=device)
    src = data or cfg
    manifest = prepare_data(src) if data is not None else Manifest.read(cfg.data.manifest, cfg.data.root)
    present = [t for t in tasks if t.column in manifest.columns]
    if not present:
        raise DataError(
            f"{manifest.path}: none of the run's task columns {[t.column for t in tasks]} are in it"
        )
    ds = make_dataset(cfg, manifest, present, split, train=False, views=True)  # shares decoded clips
    res = evaluate_model(
        model,
        ds,
        present,
        device=device,
        batch_size=batch_size,
        with_confusion=True,
        keep_predictions=True,
        split=split,
    )
    pred = res.pop("predictions")
    if data is None:  # the run's own data: keep per-clip predictions next to the run
        save_predictions(pred, Path(run_dir) / f"predictions_{split}.npz")
        record_bad_samples(Path(run_dir), split, res["bad"])
    res.update(split=split, manifest=str(manifest.path), run_dir=str(run_dir))
    return res


def record_bad_samples(run_dir: Path, split: str, bad: list[dict]) -> None:
    """List the unreadable samples of an evaluated split in the run's `bad_samples.json` (replacing that
    split's earlier entries), beside the training split's."""
    import json

    path = run_dir / "bad_samples.json"
    try:
        listed = json.loads(path.read_text()) if path.is_file() else []
    except json.JSONDecodeError:
        listed = []
    kept = [b for b in listed if b.get("split") != split]
    kept += [{**b, "split": split} for b in bad]
    if kept != listed:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(kept, indent=2, default=str))
        tmp.replace(path)
