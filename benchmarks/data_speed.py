"""Clip loading speed: PyAV random access on the original videos vs the JPEG frame cache.

Same videos, same run. Each measurement reads random 16-frame clips (random video, random start,
stride 2) as the usual "short side 128, crop 112" recipe (`--short-side`), on one core (one process, one thread). The cache is read with the page
cache dropped for its shard files before each pass (posix_fadvise DONTNEED), so it is measured from disk,
not from memory. The videos are long H.264 clips (320x240, 24 fps, default GOP) made by concatenating
clips of the synthetic action world. Prints a table; the ratio is cache / PyAV per core; and the number of
cores the cache needs to feed the GPU reference rate of DATA.md (r2plus1d_18 training, 449 clips/s).
A third row reads the cache the way a GPU training step would: the JPEG bytes of `--batch` clips at once,
decoded in one `torchvision.io.decode_jpeg` call on `--device` (default: cuda when present, else cpu;
nvjpeg on CUDA) and resized there (`FrameCache.read_batch`). Its resize works on the [T, 3, H, W] layout
the decoder returns (same output as `resize_clip`, bit for bit), as the per-clip row (the dataset's own
path, `FrameCache.read_frames`) now does too; on CPU one decode_jpeg call over a list decodes the frames
one after another, so the two rows differ little there: batching pays on CUDA.

    python benchmarks/data_speed.py [--videos 12] [--seconds 10] [--clips 200] [--batch 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from mtlhar.data.dataset import resize_clip
from mtlhar.data.frame_cache import FrameCache, build_cache
from mtlhar.data.synth import generate

GPU_REFERENCE_CLIPS_S = 449.0


def make_videos(folder: Path, n: int, seconds: float, fps: int = 24) -> list[Path]:
    """Long 320x240 H.264 videos made of synthetic action clips (a person moving over textured scenes)."""
    per = int(seconds * fps)
    clips_needed = n * -(-per // 16)
    src = folder / "synth"
    manifest = generate(src, clips=clips_needed, frames=16, size=240, seed=1, domains=("studio", "outdoor"))
    import csv

    rows = list(csv.DictReader(open(manifest)))
    paths, k = [], 0
    for v in range(n):
        path = folder / f"video{v:02d}.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
            written = 0
            while written < per:
                with av.open(str(src / rows[k % len(rows)]["path"])) as c:
                    for frame in c.decode(video=0):
                        img = frame.to_ndarray(format="rgb24")
                        canvas = np.zeros((240, 320, 3), np.uint8)
                        canvas[:, 40:280] = img
                        canvas[:, :40] = img[:, :1]
                        canvas[:, 280:] = img[:, -1:]
                        out.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
                        written += 1
                k += 1
            out.mux(stream.encode())
        paths.append(path)
    return paths


def pyav_clip(path: Path, start: int, n: int, stride: int) -> np.ndarray:
    """Seek to the keyframe before `start` and decode forward until the clip's frames are collected."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "NONE"  # one core
        fps = float(s.average_rate)
        c.seek(int(start / fps / s.time_base), stream=s, backward=True, any_frame=False)
        wanted = set(range(start, start + n * stride, stride))
        out = []
        for frame in c.decode(s):
            idx = round(float(frame.pts * s.time_base) * fps)
            if idx in wanted:
                out.append(frame.to_ndarray(format="rgb24"))
                if len(out) == n:
                    break
    return np.stack(out)


def resize_batch(x: torch.Tensor, size: int, short_side: int | None = None) -> torch.Tensor:
    """uint8 [T, 3, H, W] on any device -> uint8 [3, T, size, size]: `resize_clip`'s short-side resize
    (bilinear, antialiased; none when the short side already is `short_side`) and centre crop, done
    where the frames are."""
    h, w = x.shape[-2:]
    target = short_side or size
    if min(h, w) != target:
        scale = target / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        y = torch.nn.functional.interpolate(
            x.float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False
        )
        x = y.round().clamp(0, 255).to(torch.uint8)
        h, w = nh, nw
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, :, top : top + size, left : left + size].transpose(0, 1)


def drop_page_cache(folder: Path) -> None:
    for p in folder.glob("shard-*.bin"):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--short-side", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8, help="clips per decode call in the batched row")
    ap.add_argument("--device", default=None, help="device of the batched decode (default: cuda if present)")
    args = ap.parse_args()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n, stride = 16, 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        videos = make_videos(tmp / "videos", args.videos, args.seconds)
        print(f"made {len(videos)} videos of {args.seconds:.0f}s in {time.perf_counter() - t:.0f}s")
        lengths = {}
        for v in videos:
            with av.open(str(v)) as c:
                lengths[v] = c.streams.video[0].frames
        hours = sum(lengths.values()) / 24 / 3600
        samples = []
        for _ in range(args.clips):
            v = videos[rng.integers(len(videos))]
            samples.append((v, int(rng.integers(0, lengths[v] - n * stride))))

        t = time.perf_counter()
        for v, start in samples:
            resize_clip(pyav_clip(v, start, n, stride), 112, short_side=args.short_side)
        pyav_rate = len(samples) / (time.perf_counter() - t)

        import csv

        manifest = tmp / "videos" / "manifest.csv"
        with open(manifest, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "path"])
            w.writerows([[v.stem, v.name] for v in videos])
        t = time.perf_counter()
        build_cache(manifest, tmp / "cache", short_side=args.short_side, workers=1)
        build_s = time.perf_counter() - t
        cache = FrameCache(tmp / "cache")
        size = sum(p.stat().st_size for p in (tmp / "cache").glob("shard-*.bin"))
        drop_page_cache(tmp / "cache")
        t = time.perf_counter()
        for v, start in samples:
            frames = cache.read_frames(v.name, list(range(start, start + n * stride, stride)))
            resize_clip(frames, 112, short_side=args.short_side)  # as the dataset reads: crop only
        cache_rate = len(samples) / (time.perf_counter() - t)

        clips = [(v.name, list(range(start, start + n * stride, stride))) for v, start in samples]
        cache.read_batch(clips[:1], device=device)  # warm up (CUDA context, nvjpeg handles)
        drop_page_cache(tmp / "cache")
        t = time.perf_counter()
        for i in range(0, len(clips), args.batch):
            batch = torch.stack(
                [
                    resize_batch(x, 112, args.short_side)
                    for x in cache.read_batch(clips[i : i + args.batch], device)
                ]
            )
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        batch_rate = len(clips) / (time.perf_counter() - t)
        assert batch.shape[1:] == (3, n, 112, 112)

        # the training dataset itself: dense 16-frame clips at stride 2, random start, random 112 crop,
        # random flip, read from the cache; per sample in the loader (jpeg_decode: worker) and per batch of
        # `--batch` on `device` (jpeg_decode: device)
        from mtlhar.data.dataset import ClipDataset, collate, decode_batch_on
        from mtlhar.data.manifest import Manifest

        m = Manifest.read(manifest)
        rates = []
        for on_device in (False, True):
            ds = ClipDataset(
                m,
                [],
                split=None,
                frames=n,
                size=112,
                sampler="dense",
                stride=stride,
                train=True,
                frame_cache=str(tmp / "cache"),
                short_side=args.short_side,
                augment={"flip": 0.5},
                decode_on_device=on_device,
            )
            order = [(e, i) for e in range(-(-args.clips // len(ds))) for i in range(len(ds))][: args.clips]
            drop_page_cache(tmp / "cache")
            t = time.perf_counter()
            for k in range(0, len(order), args.batch):
                samples_ = []
                for e, i in order[k : k + args.batch]:
                    ds.set_epoch(e)
                    samples_.append(ds[i])
                out = decode_batch_on(collate(samples_), device)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            rates.append(len(order) / (time.perf_counter() - t))
            assert out["inputs"]["rgb"].shape[1:] == (3, n, 112, 112)
        ds_rate, ds_device_rate = rates
        video_bytes = sum(v.stat().st_size for v in videos)

    gb_hour = size / 1e9 / hours
    print()
    print(f"{'loader (1 core, 16x112x112 clips, stride 2)':<46}{'clips/s':>10}{'ratio':>8}")
    print(f"{'PyAV random access, original H.264 videos':<46}{pyav_rate:>10.1f}{1.0:>8.2f}")
    print(
        f"{'frame cache (JPEG q90, short side ' + str(args.short_side) + ', cold)':<46}{cache_rate:>10.1f}"
        f"{cache_rate / pyav_rate:>8.2f}"
    )
    print(
        f"{'  same, ' + str(args.batch) + ' clips per decode_jpeg call on ' + device:<46}{batch_rate:>10.1f}"
        f"{batch_rate / pyav_rate:>8.2f}"
    )
    print(f"{'ClipDataset training samples from the cache':<46}{ds_rate:>10.1f}{ds_rate / pyav_rate:>8.2f}")
    print(
        f"{'  same, data.jpeg_decode: device (' + device + ')':<46}{ds_device_rate:>10.1f}"
        f"{ds_device_rate / pyav_rate:>8.2f}"
    )
    print()
    print(
        f"cache size: {gb_hour:.2f} GB per video-hour at short side {args.short_side} "
        f"(original 320x240 H.264: {video_bytes / 1e9 / hours:.2f} GB/h); built at "
        f"{hours * 3600 / build_s:.1f}x real time on one core"
    )
    print(
        f"cores to feed {GPU_REFERENCE_CLIPS_S:.0f} clips/s (r2plus1d_18 on an H100, DATA.md): "
        f"{GPU_REFERENCE_CLIPS_S / cache_rate:.1f} with the cache vs {GPU_REFERENCE_CLIPS_S / pyav_rate:.1f} with PyAV"
    )
    print(
        f"summary: cache {cache_rate / pyav_rate:.1f}x PyAV per core ({ds_rate / pyav_rate:.1f}x through the "
        f"training dataset; target >= 10x), {gb_hour:.2f} GB/video-hour (target <= 1.5)"
    )


if __name__ == "__main__":
    main()
