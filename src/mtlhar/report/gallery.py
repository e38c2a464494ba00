"""A gallery of test clips: the frames the model saw, every task's prediction and truth, and a Grad-CAM
overlay for the primary task of the first-seed multi-task run.

Clips are picked deterministically: round-robin over (domain, primary task right or wrong) buckets in
id order, so the gallery shows successes and failures from every domain of the split.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.dataset import resize_clip
from ..data.video import read_video, sample_indices
from ..errors import DataError
from ..tasks import Task
from .saliency import grad_cam, last_map_tap
from .study import StudyData

MAX_FRAMES = 8
DISPLAY = 64  # pixels per shown frame, about (small frames are enlarged by whole factors)
GAP = 4
OVERLAY_ALPHA = 0.45


def build_gallery(data: StudyData, out_dir: Path, *, n_clips: int = 6) -> dict:
    """Render the gallery's PNGs into `out_dir`; returns what the template needs (items and notes)."""
    split = data.first_split
    group = (data.mtl_groups or list(data.groups))[0]
    run = data.groups[group][0]
    info: dict = {"run": run, "split": split, "items": [], "notes": [], "applies": True, "saliency": False}
    if not data.reads_video(run):  # no frames to show and no space-time map to explain
        info["applies"] = False
        info["sources"] = data.input_sources(run)
        return info
    pred = data.predictions(run, split)
    if pred is None or not pred["ids"]:
        info["notes"].append(f"no predictions of {run} on {split}: nothing to show")
        return info
    tasks = data.tasks_of(run)
    primary = next((t for t in tasks.values() if t.role == "primary"), next(iter(tasks.values())))
    info["task"] = primary.name
    manifest = data.manifest
    rows = {r["id"]: r for r in manifest.rows} if manifest is not None else {}
    if manifest is None:
        info["notes"].append(f"manifest {data.manifest_path} not found: frames are not shown")
    stl = {}
    for name in tasks:
        g = data.stl_group_for(name)
        if g and g != group:
            p = data.predictions(data.groups[g][0], split)
            if p is not None:
                stl[name] = (data.groups[g][0], p, {i: k for k, i in enumerate(p["ids"])})
    info["stl_runs"] = {name: v[0] for name, v in stl.items()}

    model, cfg, saliency_note = _saliency_model(data.run_dir(run), primary)
    if saliency_note:
        info["notes"].append(saliency_note)
    info["saliency"] = model is not None

    for k in choose_clips(pred, primary, rows, n_clips):
        clip_id = pred["ids"][k]
        row = rows.get(clip_id, {})
        item = {
            "id": clip_id,
            "meta": {c: row[c] for c in ("split", "domain", "view", "subject", "group") if row.get(c)},
            "tasks": [],
            "image": None,
            "frames": [],
            "explained": None,
            "note": "",
        }
        for name, task in tasks.items():
            truth, guess, ok = describe(task, pred, name, k)
            entry = {"task": name, "role": task.role, "truth": truth, "pred": guess, "ok": ok, "stl": None}
            if name in stl and clip_id in stl[name][2]:
                entry["stl"], entry["stl_ok"] = describe(task, stl[name][1], name, stl[name][2][clip_id])[1:]
            item["tasks"].append(entry)
        if row and cfg is not None:
            try:
                frames, idx = model_input(
                    manifest,
                    row,
                    frames=cfg.data.frames,
                    size=cfg.data.size,
                    sampler=cfg.data.sampler,
                    stride=cfg.data.stride,
                )
            except DataError as e:
                item["note"] = f"frames not shown: {e}"
            else:
                cam, cls = (None, None)
                if model is not None:
                    cam, cls = grad_cam(model, frames, primary.name)
                explained = primary.classes[cls] if cls is not None and primary.classes else "output"
                item["explained"] = explained if cam is not None else None
                name = f"clip_{_safe(clip_id)}.png"
                item["frames"] = render_clip(frames, idx, cam, out_dir / name)
                item["image"] = name
        info["items"].append(item)
    return info


def _saliency_model(run_dir: Path, primary: Task):
    """(the run's model, or None where Grad-CAM cannot explain it; its config, or None; the reason)."""
    from ..evaluate import load_run

    try:
        model, _, cfg = load_run(run_dir)
    except DataError as e:
        return None, None, f"no saliency: {e}"
    inputs = list(cfg.data.inputs or [cfg.data.stream])
    if inputs != ["rgb"]:
        return None, cfg, f"no saliency: the run reads {', '.join(inputs)}, not RGB video alone"
    if last_map_tap(model) is None:
        return None, cfg, "no saliency: the encoder has no space-time feature map"
    if not primary.spec.saliency:
        return None, cfg, f"no saliency: the output of a {primary.kind} task has no score to explain"
    return model, cfg, None


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def choose_clips(pred: dict, task: Task, rows: dict, n: int) -> list[int]:
    """Indices into `pred` of up to `n` clips: round-robin over (domain, right/wrong) buckets."""
    out, tgt, msk = pred["outputs"][task.name], pred["targets"][task.name], pred["masks"][task.name]
    buckets: dict[tuple, list[int]] = defaultdict(list)
    order = sorted(range(len(pred["ids"])), key=lambda k: pred["ids"][k])
    for k in order:
        valid = bool(np.asarray(msk[k]).reshape(-1)[0])
        right = task.spec.clip_correct(task, out[k], tgt[k], msk[k]) if valid else None
        buckets[(rows.get(pred["ids"][k], {}).get("domain", ""), right is not True, right is None)].append(k)
    keys = sorted(buckets)
    chosen: list[int] = []
    while len(chosen) < min(n, len(order)):
        for key in keys:
            if buckets[key] and len(chosen) < n:
                chosen.append(buckets[key].pop(0))
    return chosen


def describe(task: Task, pred: dict, name: str, k: int) -> tuple[str, str, bool | None]:
    """(truth, prediction, correct) of task `name` for clip `k`, as text (`TaskKind.describe`)."""
    out, tgt, mask = pred["outputs"][name][k], pred["targets"][name][k], pred["masks"][name][k]
    return task.spec.describe(task, out, tgt, mask)


def model_input(manifest, row: dict, *, frames: int, size: int, sampler: str, stride: int):
    """The clip as the evaluation dataset feeds it: uint8 [3, T, size, size] and the sampled frame indices."""
    start = float(row["start"]) if row.get("start") else None
    end = float(row["end"]) if row.get("end") else None
    video = read_video(manifest.resolve(row["path"]), start, end)
    idx = sample_indices(len(video), frames, mode=sampler, stride=stride)
    clip = torch.from_numpy(np.ascontiguousarray(video[idx]))  # [T, H, W, 3]
    if clip.shape[1] != size or clip.shape[2] != size:
        return resize_clip(clip.numpy(), size), idx
    return clip.permute(3, 0, 1, 2).contiguous(), idx


def render_clip(clip: torch.Tensor, idx: np.ndarray, cam: np.ndarray | None, path: Path) -> list[int]:
    """A PNG of up to MAX_FRAMES evenly spaced frames (top row) and their Grad-CAM overlay (bottom row).

    Composed as an image array (no axes: fast and sharp); returns the shown frames' indices in the video.
    """
    from matplotlib import colormaps
    from matplotlib.image import imsave

    t, h, w = clip.shape[1], clip.shape[2], clip.shape[3]
    show = np.unique(np.linspace(0, t - 1, min(t, MAX_FRAMES)).round().astype(int))
    scale = max(1, round(DISPLAY / max(h, w)))
    frames = clip.permute(1, 2, 3, 0).numpy()[show].astype(np.float32) / 255.0  # [K, H, W, 3]
    frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    rows = [frames]
    if cam is not None:
        heat = torch.from_numpy(np.ascontiguousarray(cam[show]))[:, None]
        heat = F.interpolate(heat, size=frames.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
        colour = colormaps["jet"](heat.clamp(0, 1).numpy())[..., :3]
        rows.append((1 - OVERLAY_ALPHA) * frames + OVERLAY_ALPHA * colour)
    k, fh, fw = frames.shape[:3]
    canvas = np.ones((len(rows) * fh + (len(rows) - 1) * GAP, k * fw + (k - 1) * GAP, 3), np.float32)
    for r, row in enumerate(rows):
        for j in range(k):
            y, x = r * (fh + GAP), j * (fw + GAP)
            canvas[y : y + fh, x : x + fw] = row[j]
    imsave(path, np.clip(canvas, 0, 1))
    return [int(idx[i]) for i in show]
