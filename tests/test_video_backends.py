"""Video decoder choice (PyAV / torchcodec) and batched JPEG decoding of the frame cache."""

import sys
import types
import warnings

import numpy as np
import pytest
import torch

from conftest import make_square_dataset, write_video
from mtlhar.data import video as V
from mtlhar.data.frame_cache import FrameCache, _jpeg, build_cache, decode_batch
from mtlhar.errors import ConfigError, DataError

TORCHCODEC_OK, TORCHCODEC_WHY = V.torchcodec_available()
needs_torchcodec = pytest.mark.skipif(
    not TORCHCODEC_OK, reason=f"torchcodec cannot decode here: {TORCHCODEC_WHY}"
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (nvjpeg)")


@pytest.fixture
def textured(tmp_path):
    """3 s of 8 fps 48x64 noise with a moving bar: chroma detail shows any colour-conversion difference."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (24, 48, 64, 3), dtype=np.uint8)
    for t in range(24):
        frames[t, :, 2 * t : 2 * t + 6] = (255, 40, 0)
    path = tmp_path / "clip.mp4"
    write_video(path, frames)
    return path


@pytest.fixture
def fresh_probe():
    V._torchcodec_decoder.cache_clear()
    yield
    V._torchcodec_decoder.cache_clear()


def test_backend_from_argument_or_environment(textured, monkeypatch):
    monkeypatch.delenv(V.BACKEND_ENV, raising=False)
    assert V.video_backend() == "pyav"
    monkeypatch.setenv(V.BACKEND_ENV, " PyAV ")
    assert V.video_backend() == "pyav"
    monkeypatch.setenv(V.BACKEND_ENV, "opencv")
    with pytest.raises(ConfigError, match=r"MTLHAR_VIDEO_BACKEND='opencv'.*pyav, torchcodec"):
        V.read_video(textured)
    assert V.read_video(textured, backend="pyav").shape == (24, 48, 64, 3)  # the argument wins
    with pytest.raises(ConfigError, match=r"backend='gpu'"):
        V.read_video(textured, backend="gpu")


def _assert_clear_missing_error(exc_info):
    msg = str(exc_info.value)
    assert "\n" not in msg
    assert "torchcodec" in msg and "FFmpeg shared libraries" in msg and "MTLHAR_VIDEO_BACKEND=pyav" in msg


def test_torchcodec_not_installed_is_one_clear_line(textured, monkeypatch, fresh_probe):
    monkeypatch.setitem(sys.modules, "torchcodec", None)  # import torchcodec -> ImportError
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)
    with pytest.raises(ConfigError) as exc_info:
        V.read_video(textured, backend="torchcodec")
    _assert_clear_missing_error(exc_info)
    assert "ModuleNotFoundError" in str(exc_info.value) or "ImportError" in str(exc_info.value)
    monkeypatch.setenv(V.BACKEND_ENV, "torchcodec")
    with pytest.raises(ConfigError):
        V.read_video(textured)
    assert V.torchcodec_available()[0] is False


def test_torchcodec_without_ffmpeg_libraries_is_one_clear_line(textured, monkeypatch, fresh_probe):
    class VideoDecoder:  # what torchcodec does when no FFmpeg 4-9 shared libraries are found
        def __init__(self, *a, **k):
            raise RuntimeError("Could not load libtorchcodec. Likely causes:\n  1. FFmpeg is not ...")

    fake = types.ModuleType("torchcodec.decoders")
    fake.VideoDecoder = VideoDecoder
    monkeypatch.setitem(sys.modules, "torchcodec", types.ModuleType("torchcodec"))
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", fake)
    with pytest.raises(ConfigError, match="FFmpeg libraries could not be loaded") as exc_info:
        V.read_video(textured, backend="torchcodec")
    _assert_clear_missing_error(exc_info)


def test_missing_and_empty_files_fail_the_same_with_either_backend(tmp_path, monkeypatch, fresh_probe):
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # checked before the decoder is needed
    for backend in ("pyav", "torchcodec"):
        with pytest.raises(DataError, match="video not found: .*nope.mp4"):
            V.read_video(tmp_path / "nope.mp4", backend=backend)
        (tmp_path / "empty.mp4").write_bytes(b"")
        with pytest.raises(DataError, match=r"empty.mp4: empty file \(0 bytes\)"):
            V.read_video(tmp_path / "empty.mp4", backend=backend)


@needs_torchcodec
@pytest.mark.parametrize(
    "start, end", [(None, None), (1.0, 2.0), (1.01, 1.99), (None, 0.5), (2.5, None), (2.8, 10.0)]
)
def test_torchcodec_matches_pyav(textured, start, end):
    a = V.read_video(textured, start, end, backend="pyav")
    b = V.read_video(textured, start, end, backend="torchcodec")
    assert b.dtype == np.uint8 and b.flags.c_contiguous and b.shape == a.shape
    # same frames (the segment keeps start <= t <= end); pixels equal up to FFmpeg's colour conversion
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 8


@needs_torchcodec
def test_torchcodec_broken_files_fail_as_with_pyav(textured, tmp_path, monkeypatch):
    monkeypatch.setattr(V, "_FALLBACKS", [])
    (tmp_path / "text.mp4").write_text("this is not a video\n")
    data = textured.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])
    for name in ("text.mp4", "cut.mp4"):
        errors = []
        for backend in ("pyav", "torchcodec"):
            with pytest.raises(DataError, match=rf"{name}: (cannot decode video|no decodable frames)") as e:
                V.read_video(tmp_path / name, backend=backend)
            errors.append(str(e.value))
        assert errors[0] == errors[1] and "\n" not in errors[0]
    with pytest.raises(DataError, match="clip.mp4: no decodable frames"):
        V.read_video(textured, 5.0, 6.0, backend="torchcodec")
    assert V._FALLBACKS == []  # no warning: nothing was decoded


def test_a_file_torchcodec_cannot_decode_goes_to_pyav_with_one_warning(textured, monkeypatch):
    class VideoDecoder:  # a torchcodec that loads but fails on every file
        def __init__(self, *a, **k):
            raise RuntimeError("SingleStreamDecoder, /src/SingleStreamDecoder.cpp:70, boom")

    monkeypatch.setattr(V, "_torchcodec_decoder", lambda: VideoDecoder)
    monkeypatch.setattr(V, "_FALLBACKS", [])
    with pytest.warns(RuntimeWarning, match=r"clip.mp4: torchcodec could not decode this video \(boom\)"):
        b = V.read_video(textured, 1.0, 2.0, backend="torchcodec")
    assert np.array_equal(b, V.read_video(textured, 1.0, 2.0, backend="pyav"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second fallback is counted, not reported
        V.read_video(textured, backend="torchcodec")
    assert V._FALLBACKS == [str(textured)] * 2


@needs_torchcodec
def test_torchcodec_on_h264_with_b_frames_in_avi(tmp_path, monkeypatch):
    """No timestamps on B-frames in AVI: torchcodec 0.17's frame index comes out short, PyAV takes over."""
    monkeypatch.setattr(V, "_FALLBACKS", [])
    clip = np.zeros((8, 32, 32, 3), np.uint8)
    for t in range(8):
        clip[t, 10:18, 2 + 2 * t : 10 + 2 * t, 1] = 255
    write_video(tmp_path / "b.avi", clip)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        b = V.read_video(tmp_path / "b.avi", backend="torchcodec")
    assert np.array_equal(b, V.read_video(tmp_path / "b.avi", backend="pyav"))


@pytest.fixture
def small_cache(tmp_path):
    manifest = make_square_dataset(tmp_path / "data", n=4)
    build_cache(manifest, tmp_path / "cache", short_side=None, quality=90)
    return FrameCache(tmp_path / "cache")


def test_batch_decode_equals_per_frame_decode_on_cpu(small_cache):
    _, decode_jpeg = _jpeg()
    keys = sorted(small_cache.index)
    idx = [0, 3, 7]
    enc = small_cache.read_encoded(keys[1], idx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        per_frame = torch.stack([decode_jpeg(e) for e in enc])  # one libjpeg-turbo call per frame
    batch = decode_batch(enc, "cpu")
    assert batch.dtype == torch.uint8 and batch.shape == (3, 3, 32, 32)
    assert torch.equal(batch, per_frame)  # bit for bit: the same decoder, called on a list
    assert np.array_equal(small_cache.read(keys[1], idx), per_frame.permute(0, 2, 3, 1).numpy())
    assert np.array_equal(small_cache.read(keys[1], idx, device="cpu"), small_cache.read(keys[1], idx))
    # several clips in one decode call, split back per clip
    items = [(keys[0], [1, 2]), (keys[1], idx), (keys[3], [5])]
    out = small_cache.read_batch(items, device="cpu")
    assert [o.shape[0] for o in out] == [2, 3, 1]
    for (key, ind), o in zip(items, out):
        assert np.array_equal(o.permute(0, 2, 3, 1).numpy(), small_cache.read(key, ind))


def test_batch_decode_corrupt_frame_names_the_shard(small_cache):
    key = sorted(small_cache.index)[0]
    e = small_cache.index[key]
    shard = small_cache.shard_of[key]
    data = bytearray(shard.read_bytes())
    data[e["offsets"][2] : e["offsets"][2] + e["lengths"][2]] = b"\0" * e["lengths"][2]
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"shard-0-0.bin: corrupt JPEG frame of {key!r}"):
        small_cache.read_batch([(key, [1, 2])], device="cpu")
    with pytest.raises(DataError, match="corrupt JPEG frame"):
        small_cache.read(key, [2])
    assert small_cache.read(key, [1]).shape == (1, 32, 32, 3)
    with pytest.raises(ValueError, match="no frames"):
        decode_batch([], "cpu")


@needs_cuda
def test_batch_decode_on_cuda_matches_cpu(small_cache):
    keys = sorted(small_cache.index)
    items = [(k, [0, 4, 7]) for k in keys]
    gpu = small_cache.read_batch(items, device="cuda")
    cpu = small_cache.read_batch(items, device="cpu")
    for g, c in zip(gpu, cpu):
        assert g.is_cuda and g.dtype == torch.uint8 and g.shape == c.shape
        diff = (g.cpu().int() - c.int()).abs()  # nvjpeg's IDCT / upsampling may differ by a level or two
        assert diff.float().mean() < 1.0 and diff.max() <= 8
    assert small_cache.read(keys[0], [0, 4], device="cuda").shape == (2, 32, 32, 3)
    assert decode_batch(small_cache.read_encoded(keys[0], [0])).is_cuda  # None -> CUDA when available


def test_decoder_config_key_reaches_the_decoder(squares, tmp_path, monkeypatch):
    """`data.decoder` is validated with the key named, and the dataset and the cache builder pass it on."""
    from conftest import square_config
    from mtlhar.config import RunConfig, from_dict
    from mtlhar.data import dataset as D
    from mtlhar.data import frame_cache as FC
    from mtlhar.train import Trainer

    raw = square_config(squares, steps=1, eval_every=1)
    raw["data"]["cache"] = False  # other tests may have left these clips in the process-wide store
    raw["data"]["decoder"] = "opencv"
    with pytest.raises(ConfigError, match=r"data\.decoder.*'opencv'.*pyav, torchcodec"):
        from_dict(RunConfig, raw)
    seen = []

    def spy(path, start=None, end=None, *, backend=None):
        seen.append(backend)
        return V.read_video(path, start, end, backend="pyav")

    monkeypatch.setattr(D, "read_video", spy)
    raw["data"]["decoder"] = "torchcodec"
    cfg = from_dict(RunConfig, raw)
    Trainer(cfg, tmp_path / "run").fit(log=None)
    assert seen and set(seen) == {"torchcodec"}
    seen.clear()
    monkeypatch.setattr(FC, "read_video", spy)
    build_cache(squares, tmp_path / "cache", short_side=16, decoder="pyav")
    assert seen and set(seen) == {"pyav"}
    with pytest.raises(ConfigError, match="opencv"):
        build_cache(squares, tmp_path / "cache2", decoder="opencv")
