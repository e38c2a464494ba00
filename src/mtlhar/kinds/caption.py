"""Captions: a sentence per clip (references `separator`-joined in the task's column, plus `args.refs_column`),
a decoder head (LSTM or transformer, teacher-forced in training, greedy or beam at evaluation), token-level
cross-entropy over the first reference, BLEU / ROUGE-L / CIDEr-D / exact match / token accuracy against all
references. The tokenizer, decoders and metrics live in `mtlhar.captions`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import metrics as M
from ..captions import (
    DECODERS,
    PAD_ID,
    SPECIALS,
    LSTMDecoder,
    Tokenizer,
    TransformerDecoder,
    beam_decode,
    caption_scores,
    greedy_decode,
    split_captions,
)
from ..errors import ConfigError, DataError
from ..objectives import HeadOutput, masked_token_cross_entropy
from .base import TaskKind, TaskView, directions


def tokenizer_for(task: TaskView) -> Tokenizer:
    """The task's tokenizer (its vocabulary is the task's `classes`), built once per task."""
    tok = getattr(task, "_tokenizer", None)
    if tok is None:
        tok = Tokenizer(task.classes, task.args["max_len"])
        object.__setattr__(task, "_tokenizer", tok)
    return tok


def caption_references(task: TaskView, cells: Mapping[str, str]) -> list[str]:
    """Every reference caption of a manifest row for this task (main column first)."""
    refs = split_captions(cells.get(task.column, ""), task.separator)
    extra = task.args.get("refs_column")
    if refs and extra:
        refs += [r for r in split_captions(cells.get(extra, ""), task.separator) if r not in refs]
    return refs


class CaptionHead(nn.Module):
    """tap -> video feature (and per-time-step memory) -> decoder. Training with targets: teacher-forced
    logits [B, L-1, V]; otherwise decoded ids [B, L] (greedy, or beam search with `args.beam` > 1)."""

    def __init__(self, task: TaskView, tap_dim: int, layout: str):
        super().__init__()
        a = task.args
        self.layout, self.length, self.beam = layout, a["max_len"] + 2, int(a["beam"])
        common = {"embed": a["embed"], "hidden": a["hidden"], "layers": a["layers"], "dropout": a["dropout"]}
        if a["decoder"] == "transformer":
            self.decoder = TransformerDecoder(tap_dim, len(task.classes), heads=a["heads"],
                                              max_len=self.length, **common)  # fmt: skip
        else:
            self.decoder = LSTMDecoder(tap_dim, len(task.classes), **common)

    def _features(self, tap: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.layout == "map":
            seq = tap.float().mean(dim=(3, 4)).transpose(1, 2)  # [B, T, C]
            return seq.mean(1), seq
        if self.layout == "sequence":
            return tap.float().mean(1), tap.float()
        return tap.float(), None

    def forward(self, tap: Tensor, targets: Tensor | None = None, mode: str = "train") -> HeadOutput:
        feat, memory = self._features(tap)
        if targets is not None and mode == "train":
            ids = targets[:, 0] if targets.ndim == 3 else targets  # the first reference is the training one
            logits = self.decoder.teacher_force(feat, memory, ids[:, :-1])
            return HeadOutput(output=logits, features=feat)
        if self.beam > 1:
            ids = beam_decode(self.decoder, feat, memory, self.length, self.beam)
        else:
            ids = greedy_decode(self.decoder, feat, memory, self.length)
        return HeadOutput(output=ids, features=feat)


class CaptionKind(TaskKind):
    name = "caption"
    default_loss = "ce"
    losses = ("ce",)
    default_metrics = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider_d", "exact_match", "token_acc")
    default_main = "cider_d"  # smoother than BLEU-4 (often 0 early in training) for checkpoint selection
    metric_directions = directions(default_metrics, M.METRIC_DIRECTIONS)
    needs_classes = True  # the vocabulary (with the special tokens first) is the task's label space
    args = {
        "refs_column": None,  # extra reference captions ("a | b"), used by the metrics only
        "max_refs": 4,
        "max_len": 16,  # words; sequences are max_len + 2 long (<bos>, <eos>)
        "min_count": 1,  # words seen fewer times in the training captions become <unk> (paper: 6)
        "decoder": "lstm",
        "embed": 64,
        "hidden": 256,
        "layers": 2,
        "heads": 4,
        "dropout": 0.0,
        "beam": 1,  # 1 = greedy decoding
    }
    saliency = False  # decoded word ids have no gradient to explain
    transfers = False  # a frozen-feature probe is a linear map; a caption needs a decoder

    def label_count(self, task, target: Tensor, mask: Tensor) -> Tensor:
        """The number of real tokens the loss is taken over: the first reference's after <bos> (what the
        loss divides by; all references with <bos> were counted before, which mis-weighted the
        micro-batches of an accumulated step)."""
        return torch.broadcast_to(mask, target.shape)[:, 0, 1:].sum()

    def check_args(self, args: dict, where: str) -> None:
        if args["decoder"] not in DECODERS:
            raise ConfigError(
                f"config key '{where}.decoder': {args['decoder']!r}; choose from {sorted(DECODERS)}"
            )
        for key in ("max_refs", "max_len", "min_count", "embed", "hidden", "layers", "heads", "beam"):
            if not isinstance(args[key], int) or args[key] < 1:
                raise ConfigError(f"config key '{where}.{key}': expected an integer >= 1, got {args[key]!r}")

    def resolve_classes(self, cfg, manifest, train_split: str = "train") -> list[str]:
        """The vocabulary, from the training split's captions (all rows if there is no such split)."""
        column = cfg.column or cfg.name
        args = {**self.args, **cfg.args}
        manifest.require_column(column, cfg.name)
        rows = [r for r in manifest.rows if r.get("split") == train_split] or manifest.rows
        caps = [c for r in rows for c in split_captions(r.get(column, ""), cfg.separator)]
        if not caps:
            raise DataError(f"{manifest.path}: caption task '{cfg.name}' has no caption in column '{column}'")
        return Tokenizer.build(caps, min_count=int(args["min_count"]), max_len=int(args["max_len"])).vocab

    def out_dim(self, task):
        return len(task.classes)

    def build_head(self, task, tap_dim, tap_layout) -> nn.Module:
        return CaptionHead(task, tap_dim, tap_layout)

    def output_shape(self, task, mode):
        length = task.args["max_len"] + 2
        return (length - 1, len(task.classes)) if mode == "train" else (length,)

    def empty_target(self, task):
        n, length = task.args["max_refs"], task.args["max_len"] + 2
        return torch.zeros(n, length, dtype=torch.long), torch.zeros(n, length, dtype=torch.bool)

    def target_from_cell(self, task, cell, where):
        return self._encode_refs(task, split_captions(cell, task.separator))

    def target_from_row(self, task, cells, where):
        return self._encode_refs(task, caption_references(task, cells))

    def _encode_refs(self, task, refs: list[str]):
        target, mask = self.empty_target(task)
        tok = tokenizer_for(task)
        for i, ref in enumerate(refs[: task.args["max_refs"]]):
            ids = torch.tensor(tok.encode(ref), dtype=torch.long)
            target[i], mask[i] = ids, ids != PAD_ID
        return target, mask

    def loss(self, task, output, target, mask):
        if output.ndim != 3:
            raise ValueError(
                "caption loss needs teacher-forced logits [B, L-1, V] (mode 'train' with targets)"
            )
        return masked_token_cross_entropy(
            output, target[:, 0, 1:], mask[:, 0, 1:], label_smoothing=task.label_smoothing
        )

    def metrics(self, task, output, target, mask):
        ids = np.asarray(output).astype(np.int64)
        tgt = np.asarray(target).astype(np.int64)
        m = np.asarray(mask).astype(bool).reshape(tgt.shape)
        if ids.ndim != 2 or tgt.ndim != 3:
            raise ValueError(
                f"caption metrics need decoded ids [N, L] and targets [N, R, L], got {ids.shape}"
            )
        valid = m[:, 0, 0]
        if not valid.any():
            return {}
        tok = tokenizer_for(task)
        hyps, refs = [], []
        for i in np.flatnonzero(valid):
            hyps.append(tok.tokens(ids[i]))
            refs.append([tok.tokens(tgt[i, r]) for r in range(tgt.shape[1]) if m[i, r, 0]])
        res = caption_scores(hyps, refs)
        pos = m[valid, 0, 1:]  # the first reference's words and its <eos>
        length = min(ids.shape[1], tgt.shape[2])
        agree = ids[valid, 1:length] == tgt[valid, 0, 1:length]
        res["token_acc"] = float(agree[pos[:, : length - 1]].mean()) if pos.any() else 0.0
        return {k: v for k, v in res.items() if k in task.metrics}

    def decode(self, task, output, k=3):
        tok = tokenizer_for(task)
        if output.ndim == 3:  # teacher-forced logits
            output = output.argmax(-1)
        return [tok.decode(row.tolist()) for row in output.long()]

    def describe(self, task, output, target, mask):
        """Decoded ids [L] against the first reference of targets [refs, L]."""
        guess = self.decode(task, torch.as_tensor(output).reshape(1, -1))[0]
        if not bool(np.asarray(mask).reshape(-1).any()):
            return "(no label)", guess, None
        truth = self.decode(task, torch.as_tensor(target).reshape(-1, np.shape(output)[-1])[:1])[0]
        return truth, guess, guess == truth

    def example(self) -> dict[str, Any]:
        vocab = [*SPECIALS, "a", "box", "moves"]
        args = {"max_len": 4, "max_refs": 2, "embed": 4, "hidden": 8, "layers": 1}
        return {"task": {"args": args}, "classes": vocab, "cells": ["a box moves", "", "box | a box"]}
