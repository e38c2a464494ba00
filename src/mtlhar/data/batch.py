"""Batches: stacking samples, the typed `Batch`, and decoding JPEG frames on the training device.

`collate` returns the dict every caller uses: `{"inputs": {stream: Tensor}, "targets": {task: Tensor},
"mask": {task: Tensor}, "meta": {"ids", "rows", "bad"}, "size": n}`. A dataset that declares streams
(`data.streams`) adds `"streams"` (every stream, the inputs among them), `"valid"` (per-pixel validity of
dense streams) and `meta["frames"]` / `meta["flipped"]`; one with several views per sample (`data.views`)
adds `"views"`, a list with one `{"inputs", "streams", "valid", "frames", "flipped"}` per view (view 0 is
the top level). `Batch` is the same batch as a dataclass, with `.to(device)`; it also answers
`batch["inputs"]`, so it can go wherever the dict goes.

    >>> b = Batch.from_dict(collate(samples))          # doctest: +SKIP
    >>> b = b.to("cuda"); b.inputs["rgb"], b.masks["fine"]   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

from ..errors import DataError
from .transforms import apply_plan


def sample_dict(x: dict, labels: dict, meta: dict) -> dict:
    """A sample from its input streams, its labels `{task: (target, mask)}` and its meta."""
    return {
        "inputs": x,
        "targets": {k: v[0] for k, v in labels.items()},
        "mask": {k: v[1] for k, v in labels.items()},
        "meta": meta,
    }


def _stack(values: list) -> Any:
    return values if isinstance(values[0], dict) else torch.stack(values)  # rgb_jpeg: a list of clips


def _streams(good: list[dict], part: str, reuse: dict | None = None) -> dict:
    """Stack `part` of every sample per stream; a stream that is also in `reuse` (the same tensor in the
    sample) is not stacked twice."""
    out = {}
    first = good[0][part]
    for k in first:
        if reuse is not None and k in reuse and all(s[part][k] is s["streams"][k] for s in good):
            out[k] = reuse[k]
        else:
            out[k] = _stack([s[part][k] for s in good])
    return out


def _views(good: list[dict], top: dict) -> list[dict]:
    views = [
        {
            "inputs": top["inputs"],
            "streams": top["streams"],
            "valid": top["valid"],
            "frames": top["meta"]["frames"],
            "flipped": top["meta"]["flipped"],
        }
    ]
    for v in range(1, len(good[0]["views"])):
        each = [s["views"][v] for s in good]
        streams = {k: torch.stack([e["streams"][k] for e in each]) for k in each[0]["streams"]}
        views.append(
            {
                "inputs": {k: streams[k] for k in each[0]["inputs"]},
                "streams": streams,
                "valid": {k: torch.stack([e["valid"][k] for e in each]) for k in each[0]["valid"]},
                "frames": torch.stack([e["frames"] for e in each]),
                "flipped": torch.tensor([e["flipped"] for e in each]),
            }
        )
    return views


def collate(samples: list[dict]) -> dict:
    """Stack samples into a batch; samples that could not be read go to `meta["bad"]`."""
    good = [s for s in samples if "bad" not in s]
    bad = [s["bad"] for s in samples if "bad" in s]
    if not good:
        return {
            "inputs": {},
            "targets": {},
            "mask": {},
            "meta": {"ids": [], "rows": [], "bad": bad},
            "size": 0,
        }
    first = good[0]
    batch = {"inputs": {}, "targets": {}, "mask": {}}
    if "streams" in first:
        batch["streams"] = _streams(good, "streams")
        batch["valid"] = _streams(good, "valid")
    batch["inputs"] = _streams(good, "inputs", batch.get("streams"))
    batch["targets"] = {k: torch.stack([s["targets"][k] for s in good]) for k in first["targets"]}
    batch["mask"] = {k: torch.stack([s["mask"][k] for s in good]) for k in first["mask"]}
    batch["meta"] = {
        "ids": [s["meta"]["id"] for s in good],
        "rows": [s["meta"]["row"] for s in good],
        "bad": bad,
    }
    if "streams" in first:
        batch["meta"]["frames"] = torch.stack([s["meta"]["frames"] for s in good])
        batch["meta"]["flipped"] = torch.tensor([s["meta"]["flipped"] for s in good])
    batch["size"] = len(good)
    if "views" in first:
        batch["views"] = _views(good, batch)
    return batch


def _select(batch: dict, keep: list[int]) -> dict:
    """The batch with only the samples `keep` (every tensor indexed on its batch axis)."""
    index = torch.tensor(keep, dtype=torch.long)
    out = dict(batch)
    for part in ("targets", "mask", "streams", "valid"):
        if part in batch:
            out[part] = {k: v[index] for k, v in batch[part].items()}
    meta = dict(batch["meta"], ids=[batch["meta"]["ids"][j] for j in keep])
    meta["rows"] = [batch["meta"]["rows"][j] for j in keep]
    for k in ("frames", "flipped"):
        if k in meta:
            meta[k] = meta[k][index]
    out["meta"] = meta
    if "views" in batch:
        out["views"] = [
            {
                k: {n: t[index] for n, t in v.items()} if isinstance(v, dict) else v[index]
                for k, v in view.items()
            }
            for view in batch["views"]
        ]
    out["size"] = len(keep)
    return out


def decode_batch_on(batch: dict, device: torch.device | str) -> dict:
    """Turn a batch's `rgb_jpeg` input (`data.jpeg_decode: device`) into `rgb` on `device`: every frame of
    every clip decoded in one `decode_jpeg` call there (nvjpeg on CUDA), then each clip's plan applied
    (resize, crop, augmentation), exactly as the loader would have. A clip with a corrupt frame is dropped
    from the batch and listed in `meta["bad"]`, as an unreadable sample is by `collate`."""
    from .frame_cache import decode_batch

    clips = batch["inputs"].get("rgb_jpeg")
    if clips is None:
        return batch
    encoded = [f for c in clips for f in c["frames"]]
    try:
        frames = decode_batch(encoded, device, where=clips[0]["where"]).split(
            [len(c["frames"]) for c in clips]
        )
    except DataError:  # find the bad clip(s): decode each on its own
        frames = []
        for c in clips:
            try:
                frames.append(decode_batch(c["frames"], device, where=c["where"]))
            except DataError as e:
                frames.append(e)
    keep = [j for j, f in enumerate(frames) if not isinstance(f, DataError)]
    bad = [
        {
            "id": batch["meta"]["ids"][j],
            "row": batch["meta"]["rows"][j],
            "path": clips[j]["path"],
            "reason": str(frames[j]),
        }
        for j, f in enumerate(frames)
        if isinstance(f, DataError)
    ]
    out = _select(batch, keep) if bad else dict(batch)
    if bad:
        out["meta"]["bad"] = batch["meta"]["bad"] + bad
    inputs = {k: v for k, v in batch["inputs"].items() if k != "rgb_jpeg"}
    if bad:
        index = torch.tensor(keep, dtype=torch.long)
        inputs = {k: v[index] for k, v in inputs.items()}
    out["inputs"] = inputs
    if keep:
        inputs["rgb"] = torch.stack([apply_plan(frames[j], clips[j]["plan"], clips[j]["size"]) for j in keep])
        if "streams" in out:
            out["streams"] = {**out["streams"], "rgb": inputs["rgb"]}
    return out


def _move(value: Any, device, non_blocking: bool) -> Any:
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, dict):
        return {k: _move(v, device, non_blocking) for k, v in value.items()}
    if isinstance(value, list):
        return [_move(v, device, non_blocking) for v in value]
    return value


# dict key -> Batch field (the dict says "mask" for what the dataclass calls `masks`)
_FIELDS = {
    "inputs": "inputs",
    "targets": "targets",
    "mask": "masks",
    "streams": "streams",
    "valid": "valid",
    "views": "views",
    "meta": "meta",
    "size": "size",
}


@dataclass(eq=False)
class Batch(Mapping):
    """A collated batch, typed: `inputs` (the streams the encoder reads), `targets` and `masks` per task,
    `streams` (every declared stream), `valid` (per-pixel validity of dense streams), `views` (per view:
    inputs, streams, valid, frames, flipped), `meta` (ids, rows, bad, frames, flipped), `size`.

    Read-only mapping access with the dict's keys (`batch["inputs"]`, `batch["mask"]`) keeps code written
    for `collate`'s dict working; `as_dict()` gives that dict back."""

    inputs: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, Tensor] = field(default_factory=dict)
    masks: dict[str, Tensor] = field(default_factory=dict)
    streams: dict[str, Tensor] = field(default_factory=dict)
    valid: dict[str, Tensor] = field(default_factory=dict)
    views: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=lambda: {"ids": [], "rows": [], "bad": []})
    size: int = 0

    @classmethod
    def from_dict(cls, batch: Mapping) -> Batch:
        """The Batch of a `collate` dict (keys it lacks stay empty)."""
        if isinstance(batch, Batch):
            return batch
        return cls(**{name: batch[key] for key, name in _FIELDS.items() if key in batch})

    def as_dict(self) -> dict:
        """`collate`'s dict (keys of streams, valid and views only when the batch has them)."""
        out = {key: getattr(self, name) for key, name in _FIELDS.items()}
        return {k: v for k, v in out.items() if k not in ("streams", "valid", "views") or v}

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Every tensor on `device` (JPEG frames of `data.jpeg_decode: device` decoded there first)."""
        batch = self
        if "rgb_jpeg" in self.inputs:
            batch = Batch.from_dict(decode_batch_on(self.as_dict(), device))
        moved = {f.name: _move(getattr(batch, f.name), device, non_blocking) for f in fields(batch)}
        return Batch(**moved)

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, _FIELDS[key])

    def __contains__(self, key: object) -> bool:
        return key in self.as_dict()

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())


def collate_batch(samples: list[dict]) -> Batch:
    """`collate`, as a typed `Batch` (a DataLoader's `collate_fn` for code written against `Batch`)."""
    return Batch.from_dict(collate(samples))
