"""Grad-CAM over space-time (Selvaraju et al., 2017) on an encoder's last feature map.

The map tap A [1, C, T', H', W'] keeps its gradient; the score of one output (the predicted class logit)
is back-propagated; channel weights are the gradient's mean over T', H', W'; the map is
relu(sum_c w_c A_c), upsampled to the clip's frames and size and scaled to [0, 1] over the whole clip (so
that frames can be compared with each other).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def last_map_tap(model) -> str | None:
    """The deepest tap with layout "map" ([B, C, T, H, W]), or None for encoders without one."""
    maps = [name for name, (_, layout) in model.encoder.taps.items() if layout == "map"]
    return maps[-1] if maps else None


def grad_cam(
    model, clip: torch.Tensor, task: str, *, tap: str | None = None
) -> tuple[np.ndarray, int | None]:
    """Grad-CAM of `task` for one clip.

    clip: the model's input for its stream, one sample (e.g. uint8 [3, T, H, W]). Returns the map
    [T, H, W] in [0, 1] and the explained class index, as the task's kind chooses the score
    (`TaskKind.saliency_score`: the top class's logit, or the outputs' sum with None for regression).
    Raises ValueError when the encoder has no map tap or the kind has no score to explain.
    """
    tap = tap or last_map_tap(model)
    if tap is None:
        raise ValueError("the encoder has no space-time feature map tap: Grad-CAM needs one")
    kind = model.tasks[task].spec
    if not kind.saliency:
        raise ValueError(f"task {task!r}: a {kind.name} output has no score for Grad-CAM to explain")
    model.eval()
    x = clip.unsqueeze(0)
    with torch.enable_grad():
        taps = model.encoder(x)
        act = taps[tap]
        act.retain_grad()
        t = model.tasks[task]
        out = model.heads[task](taps[t.tap], None, "eval").output.float()
        score, cls = t.spec.saliency_score(t, out)
        model.zero_grad(set_to_none=True)
        score.backward()
    grad = act.grad.detach()[0]  # [C, T', H', W']
    weights = grad.mean(dim=(1, 2, 3))
    cam = F.relu((weights[:, None, None, None] * act.detach()[0]).sum(0))  # [T', H', W']
    size = tuple(clip.shape[-3:])  # (T, H, W)
    cam = F.interpolate(cam[None, None], size=size, mode="trilinear", align_corners=False)[0, 0]
    top = float(cam.max())
    cam = cam / top if top > 0 else cam
    model.zero_grad(set_to_none=True)
    return cam.numpy(), cls
