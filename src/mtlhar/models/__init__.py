"""Encoders with taps, temporal modules, heads and the multi-task model."""

from .encoders import ENCODERS, build_encoder
from .multitask import Head, ModelOutput, MultiTaskModel
from .temporal import TEMPORAL, build_temporal

__all__ = ["ENCODERS", "TEMPORAL", "Head", "ModelOutput", "MultiTaskModel", "build_encoder", "build_temporal"]
