"""Heads and the multi-task model.

`MultiTaskModel(encoder, tasks)`: the encoder returns named taps; each task's head picks its tap, owns its
temporal module, and returns a `HeadOutput` (output + intermediates). A task's kind builds its head
(`task.spec.build_head`: this module's `Head` unless the kind has its own, e.g. caption decoders).
Single-task training is the same model with one task.

This module knows nothing of tasks beyond that call (`mtlhar.kinds` builds `Head`s, so importing the
task layer here would be a cycle).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ..errors import ConfigError
from ..objectives import HeadOutput
from .temporal import build_temporal


class Head(nn.Module):
    """tap -> (spatial mean for maps) -> temporal module (for sequences) -> MLP -> `out_dim` outputs.

    Sizes, not a task: `temporal` is an alias of `models.temporal.TEMPORAL` built with `temporal_args`
    (`where` names them in errors); `hidden` > 0 adds a ReLU layer, `dropout` > 0 a dropout before the
    last layer. Task kinds build it (`TaskKind.build_head`) from a task's fields.
    """

    def __init__(
        self,
        tap_dim: int,
        layout: str,
        out_dim: int,
        *,
        temporal: str = "mean",
        temporal_args: dict[str, Any] | None = None,
        hidden: int = 0,
        dropout: float = 0.0,
        where: str = "temporal_args",
    ):
        super().__init__()
        self.layout = layout
        self.temporal = (
            build_temporal(temporal, tap_dim, where=where, **(temporal_args or {}))
            if layout in ("map", "sequence")
            else nn.Identity()
        )
        layers: list[nn.Module] = []
        dim = getattr(self.temporal, "out_dim", tap_dim)  # a temporal module may change the size
        if hidden:
            layers += [nn.Linear(dim, hidden), nn.ReLU()]
            dim = hidden
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(dim, out_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, tap: Tensor, targets: Tensor | None = None, mode: str = "train") -> HeadOutput:
        if self.layout == "map":
            tap = tap.mean(dim=(3, 4)).transpose(1, 2)  # [B, C, T, H, W] -> [B, T, C]
        feat = self.temporal(tap) if self.layout in ("map", "sequence") else tap
        return HeadOutput(output=self.mlp(feat), features=feat)


@dataclass
class ModelOutput:
    heads: dict[str, HeadOutput]
    taps: dict[str, Tensor]

    @property
    def shared(self) -> Tensor:
        """The shared representation (the encoder's pooled vector)."""
        return self.taps["pooled"]


class MultiTaskModel(nn.Module):
    def __init__(self, encoder: nn.Module, tasks: Sequence[Any]):
        """`tasks`: resolved `mtlhar.tasks.Task`s (name, tap, kind)."""
        super().__init__()
        self.encoder = encoder
        self.tasks = {t.name: t for t in tasks}
        heads = {}
        for t in tasks:
            if t.tap not in encoder.taps:
                raise ConfigError(
                    f"task '{t.name}': tap {t.tap!r} does not exist on this encoder; taps are {sorted(encoder.taps)}"
                )
            dim, layout = encoder.taps[t.tap]
            heads[t.name] = t.spec.build_head(t, dim, layout)
        self.heads = nn.ModuleDict(heads)

    @property
    def stream(self) -> str:
        return self.encoder.stream

    def forward(
        self, inputs: Mapping[str, Tensor], targets: Mapping[str, Tensor] | None = None, mode: str = "train"
    ):
        taps = self.encoder(inputs[self.encoder.stream])
        heads = {
            name: head(taps[self.tasks[name].tap], None if targets is None else targets.get(name), mode)
            for name, head in self.heads.items()
        }
        return ModelOutput(heads=heads, taps=taps)

    def shared_tap(self) -> str:
        """The deepest tap every head descends from (taps are listed in computation order)."""
        order = list(self.encoder.taps)
        return order[min(order.index(t.tap) for t in self.tasks.values())]

    def shared_parameters(self):
        return self.encoder.parameters()
