"""Representation quality of a trained encoder (METHODS.md section 7).

On L2-normalised pooled embeddings f:
- alignment = E_pos ||f(x) - f(y)||^alpha (alpha = 2) over positive pairs: two differently sampled views
  (other frames of the same clip) of every test clip; lower is better;
- uniformity = log E exp(-t ||f(x) - f(y)||^2) (t = 2) over all pairs of test clips; lower is better;
- linear probe: a logistic regression (scikit-learn) on frozen train embeddings, accuracy on test, for
  every classification task with labels (the same protocol for every encoder, whatever it was trained on).
Also usable as the auxiliary loss `beta * (align + gamma * uniform)` (see `align_uniform_loss`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .data.dataset import ClipDataset, collate
from .data.manifest import Manifest


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    return (F.normalize(x, dim=-1) - F.normalize(y, dim=-1)).norm(dim=1).pow(alpha).mean()


def uniformity(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    x = F.normalize(x, dim=-1)
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


def align_uniform_loss(x, y, *, beta: float = 1.0, gamma: float = 1.0) -> torch.Tensor:
    return beta * (alignment(x, y) + gamma * (uniformity(x) + uniformity(y)) / 2)


@torch.no_grad()
def embed(model, dataset: ClipDataset, *, device, batch_size: int = 32, max_clips: int | None = None):
    """Pooled embeddings [N, D] and the dataset's targets/masks for every task."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    feats, targets, masks, n = [], {}, {}, 0
    for batch in loader:
        if batch["size"] == 0:
            continue
        taps = model.encoder(batch["inputs"][model.stream].to(device))
        feats.append(taps["pooled"].float().cpu())
        for k in batch["targets"]:
            targets.setdefault(k, []).append(batch["targets"][k])
            masks.setdefault(k, []).append(batch["mask"][k])
        n += batch["size"]
        if max_clips and n >= max_clips:
            break
    return (
        torch.cat(feats),
        {k: torch.cat(v) for k, v in targets.items()},
        {k: torch.cat(v) for k, v in masks.items()},
    )


def representation_quality(
    run_dir: str | Path, task_cfgs: list[dict], *, test_split: str = "test", max_train: int = 1500
) -> dict:
    """Alignment, uniformity and linear-probe accuracy of a run's selected encoder on every
    classification task in `task_cfgs` (e.g. all tasks of a study, not only those the run trained on)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from .build import make_dataset
    from .data.dataset import resolve_tasks
    from .evaluate import load_run

    device = torch.device("cpu")
    model, _, cfg = load_run(run_dir, device=device)
    manifest = Manifest.read(cfg.data.manifest, cfg.data.root)
    from .config import TaskConfig

    probe_cfgs = [TaskConfig(**t) for t in task_cfgs if t.get("kind", "classification") == "classification"]
    tasks = resolve_tasks(probe_cfgs, manifest)

    def ds(split, train, seed=0):  # decoded clips are shared with the other runs (`DecodedClips`)
        return make_dataset(cfg, manifest, tasks, split, train=train, seed=seed, cache=True)

    view_a, test_y, test_m = embed(model, ds(test_split, False), device=device)
    view_b = embed(model, ds(test_split, True, seed=1), device=device)[0]  # other frames of the same clips
    res = {
        "alignment": float(alignment(view_a, view_b)),
        "uniformity": float(uniformity(view_a)),
        "probe": {},
    }
    train_x, train_y, train_m = embed(
        model, ds(cfg.data.train_split, False), device=device, max_clips=max_train
    )
    scaler = StandardScaler().fit(train_x.numpy())
    for t in tasks:
        tm, em = train_m[t.name].bool().reshape(-1), test_m[t.name].bool().reshape(-1)
        y = train_y[t.name].numpy()[tm.numpy()]
        if len(np.unique(y)) < 2:
            continue
        clf = LogisticRegression(max_iter=500).fit(scaler.transform(train_x.numpy()[tm.numpy()]), y)
        pred = clf.predict(scaler.transform(view_a.numpy()[em.numpy()]))
        res["probe"][t.name] = float((pred == test_y[t.name].numpy()[em.numpy()]).mean())
    return res
