"""The synthetic action world: mtlhar's embedded, procedurally generated action-video dataset.

An articulated figure (18-joint 3D skeleton, perspective-projected, capsule limbs with shading,
clothing colours) performs 23 fine actions in 6 coarse groups, including exact time-reversal
pairs (sit down / stand up, ...) and object actions with caption placeholders. Every clip comes
with joints, visibility, person mask and exact optical flow.

    from mtlhar.data.synth import generate
    manifest = generate("data/synth", clips=2000, workers=2)
"""

from .actions import COARSE_OF, FINE_ACTIONS, TEMPLATE_OF, TIME_ORDER_PAIRS
from .background import DOMAINS
from .scene import ClipSpec, Rendered, render_clip
from .skeleton import JOINTS
from .store import decode_video, load_flow, load_pose, read_manifest
from .world import GENERATOR_VERSION, generate, plan, spec_for

__all__ = [
    "COARSE_OF",
    "DOMAINS",
    "FINE_ACTIONS",
    "GENERATOR_VERSION",
    "JOINTS",
    "TEMPLATE_OF",
    "TIME_ORDER_PAIRS",
    "ClipSpec",
    "Rendered",
    "decode_video",
    "generate",
    "load_flow",
    "load_pose",
    "plan",
    "read_manifest",
    "render_clip",
    "spec_for",
]
