"""The synthetic action world: mtlhar's embedded, procedurally generated action-video dataset.

An articulated figure (18-joint 3D skeleton, perspective-projected, capsule limbs with shading,
clothing colours) performs 23 fine actions in 6 coarse groups, including exact time-reversal
pairs (sit down / stand up, ...) and object actions with caption placeholders. Every clip comes
with joints, visibility, person and body-part masks and exact optical flow (`generate(streams=...)`
writes them as per-clip arrays beside the videos; `mtlhar.data.sources` reads them as streams).

    from mtlhar.data.synth import generate
    manifest = generate("data/synth", clips=2000, workers=2)
"""

from .actions import COARSE_OF, FINE_ACTIONS, TEMPLATE_OF, TIME_ORDER_PAIRS
from .background import DOMAINS
from .scene import PART_FLIP_PAIRS, PART_NAMES, ClipSpec, Rendered, render_clip
from .skeleton import FLIP_PAIRS, JOINTS
from .store import decode_video, load_flow, load_keypoints, load_mask, load_parts, load_pose, read_manifest
from .world import GENERATOR_VERSION, STORED_STREAMS, generate, plan, spec_for

__all__ = [
    "COARSE_OF",
    "DOMAINS",
    "FINE_ACTIONS",
    "FLIP_PAIRS",
    "GENERATOR_VERSION",
    "JOINTS",
    "PART_FLIP_PAIRS",
    "PART_NAMES",
    "STORED_STREAMS",
    "TEMPLATE_OF",
    "TIME_ORDER_PAIRS",
    "ClipSpec",
    "Rendered",
    "decode_video",
    "generate",
    "load_flow",
    "load_keypoints",
    "load_mask",
    "load_parts",
    "load_pose",
    "plan",
    "read_manifest",
    "render_clip",
    "spec_for",
]
