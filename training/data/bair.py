"""Convert the original BAIR robot pushing release (softmotion30_44k TFRecords) to the layout.

The release (``bair_robot_pushing_dataset_v0.tar``) unpacks to ``softmotion30_44k/{train,test}/
traj_*_to_*.tfrecords``. Each record is a ``tf.train.Example`` holding, for every step
``t = 0 .. 29``:

- ``{t}/image_aux1/encoded``: bytes, the raw 64 x 64 x 3 uint8 RGB frame (row-major, no codec);
- ``{t}/endeffector_pos``: 3 floats, the gripper's position;
- ``{t}/action``: 4 floats, the commanded action.

(``{t}/image_main/encoded`` also exists; ``image_aux1`` is the view every paper uses.)

The records are read with the ``tfrecord`` package (no TensorFlow). Each record becomes a clip
folder ``DST/<split>/NNNNN/`` with ``00000.png ... 00029.png``, ``actions.pkl`` (a list of T
float32 (4,) arrays), ``metadata.pkl`` (a list of T dicts with ``endeffector_pos`` float32 (3,)
and the source ``file``, ``record`` and ``step``) and ``dones.pkl`` (T bools, the last True).
BAIR has no ground-truth masks, so no ``ground_truth.npz``.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from training.data.layout import DataWarning
from training.data.png import write_png

__all__ = ["BairSummary", "convert_bair", "find_tfrecords", "read_bair_record"]

IMAGE_KEY = "image_aux1"
"""The camera view converted."""


@dataclass
class BairSummary:
    """What :func:`convert_bair` wrote."""

    root: Path
    """The output root."""
    clips: dict[str, int] = field(default_factory=dict)
    """Clips written per split."""
    skipped: int = 0
    """Records or files skipped as unreadable."""


def find_tfrecords(src: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """TFRecord files of a BAIR source, per split.

    ``src`` may be a ``softmotion30_44k`` folder with ``train/``, ``test/`` (and ``val/``)
    folders, a folder of ``*.tfrecords`` files (all "train"), or one file ("train").

    Raises:
        FileNotFoundError: nothing found (the message says what ``src`` holds).
    """
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"BAIR source does not exist: {src}")
    if src.is_file():
        return {"train": [src]}
    out: dict[str, list[Path]] = {}
    for split in ("train", "val", "test"):
        files = sorted((src / split).glob("*.tfrecord*")) if (src / split).is_dir() else []
        if files:
            out[split] = sorted(files, key=_traj_key)
    if not out:
        nested = src / "softmotion30_44k"
        if nested.is_dir():
            return find_tfrecords(nested)
        files = sorted(src.glob("*.tfrecord*"), key=_traj_key)
        if files:
            out["train"] = files
    if not out:
        shown = ", ".join(sorted(os.listdir(src))[:8]) or "nothing"
        raise FileNotFoundError(
            f"no *.tfrecords under {src} (looked in train/, val/, test/ and the folder itself); "
            f"it holds: {shown}"
        )
    return out


def read_bair_record(record: bytes | memoryview, image_key: str = IMAGE_KEY) -> dict[str, Any]:
    """Decode one serialized BAIR example.

    Returns:
        dict with ``frames`` uint8 (T, 64, 64, 3), ``actions`` float32 (T, 4) (NaN where
        missing) and ``endeffector_pos`` float32 (T, 3) (NaN where missing).

    Raises:
        ValueError: not a BAIR example (no ``0/<image_key>/encoded``) or a malformed frame.
    """
    from tfrecord import example_pb2

    example = example_pb2.Example()
    try:
        example.ParseFromString(bytes(record))
    except Exception as exc:  # protobuf's DecodeError
        raise ValueError(f"not a tf.train.Example: {exc}") from exc
    feats = example.features.feature
    steps = 0
    while f"{steps}/{image_key}/encoded" in feats:
        steps += 1
    if steps == 0:
        keys = sorted(feats.keys())[:6]
        raise ValueError(f"no '0/{image_key}/encoded' in the record (keys: {keys} ...)")
    frames = []
    actions = np.full((steps, 4), np.nan, dtype=np.float32)
    eef = np.full((steps, 3), np.nan, dtype=np.float32)
    for t in range(steps):
        data = feats[f"{t}/{image_key}/encoded"].bytes_list.value[0]
        frames.append(_decode_frame(data, t))
        if f"{t}/action" in feats:
            a = np.asarray(feats[f"{t}/action"].float_list.value, dtype=np.float32)
            actions[t, : min(4, a.size)] = a[:4]
        if f"{t}/endeffector_pos" in feats:
            e = np.asarray(feats[f"{t}/endeffector_pos"].float_list.value, dtype=np.float32)
            eef[t, : min(3, e.size)] = e[:3]
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise ValueError(f"frames of one record differ in size: {sorted(shapes)}")
    return {"frames": np.stack(frames), "actions": actions, "endeffector_pos": eef}


def convert_bair(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    val_fraction: float = 0.0,
    limit: int | None = None,
    workers: int = 1,
    image_key: str = IMAGE_KEY,
    progress: bool = False,
    png_level: int = 0,
) -> BairSummary:
    """Convert BAIR TFRecords into ``dst/{train,val,test}/NNNNN/`` clip folders.

    Args:
        src: see :func:`find_tfrecords`.
        dst: output root (created; existing clip folders with the same numbers are replaced).
        val_fraction: move this fraction of the LAST train files to "val" (the release has no
            val split); 0 keeps them all in train.
        limit: convert at most this many records per split (for a quick look).
        workers: processes; files are converted in parallel, clip numbers stay deterministic.
        image_key: the camera view (``image_aux1``; ``image_main`` is the other one).
        progress: show a progress bar.
        png_level: 0 writes uncompressed PNGs (12 KiB a frame, decoded much faster, which
            matters because 44K clips never fit a cache; docs/performance.md); 1-9 compressed
            ones (~half the size).

    Returns:
        A :class:`BairSummary`; unreadable records are skipped and counted in one warning.
    """
    _check_convert_args(val_fraction, limit, workers, png_level)
    splits = _split_off_val(find_tfrecords(src), val_fraction)
    root = Path(dst)
    root.mkdir(parents=True, exist_ok=True)
    summary = BairSummary(root=root)
    jobs, problems = _plan_jobs(splits, limit, image_key, png_level)
    results = _run_jobs(root, jobs, workers, progress)
    for split, written, errors in results:
        summary.clips[split] = summary.clips.get(split, 0) + written
        problems.extend(errors)
    summary.skipped = len(problems)
    if problems:
        warnings.warn(
            f"skipped {len(problems)} unreadable BAIR records or file tails "
            f"(e.g. {'; '.join(problems[:3])})",
            DataWarning,
            stacklevel=2,
        )
    if not any(summary.clips.values()):
        raise ValueError(f"no BAIR record could be converted from {src}: {'; '.join(problems[:3])}")
    info = {
        "source": "BAIR robot pushing (softmotion30_44k)",
        "src": str(Path(src).resolve()),
        "image_key": image_key,
        "png_level": png_level,
        "clips": summary.clips,
        "skipped": summary.skipped,
    }
    (root / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return summary


_Job = tuple[str, int, Path, str, int, int]
"""One file's conversion: split, first clip number, TFRecord path, image key, records to
convert, PNG level (the arguments of :func:`_convert_file` after the root)."""


def _check_convert_args(val_fraction: float, limit: int | None, workers: int,
                        png_level: int) -> None:
    """ValueError naming the received value for :func:`convert_bair`'s bad numbers."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    if not 0 <= png_level <= 9:
        raise ValueError(f"png_level must be in 0..9, got {png_level!r}")


def _split_off_val(splits: dict[str, list[Path]], val_fraction: float) -> dict[str, list[Path]]:
    """Move the last ``val_fraction`` of the train files to "val" when there is no val split.

    Changes and returns ``splits``; at least one file moves (when train has more than one).
    """
    if val_fraction > 0 and "train" in splits and "val" not in splits:
        files = splits["train"]
        n_val = max(1, int(round(len(files) * val_fraction))) if len(files) > 1 else 0
        if n_val:
            splits["train"], splits["val"] = files[:-n_val], files[-n_val:]
    return splits


def _plan_jobs(splits: dict[str, list[Path]], limit: int | None, image_key: str,
               png_level: int) -> tuple[list[_Job], list[str]]:
    """One job per file with records to convert, clips numbered per split in file order.

    Returns the jobs and the problems met while counting records (a file's unreadable tail).
    """
    problems: list[str] = []
    jobs: list[_Job] = []
    for split, files in splits.items():
        first = 0
        for path in files:
            n, err = _count_records(path)
            if err:
                problems.append(f"{path.name}: {err}")
            if limit is not None:
                n = min(n, limit - first)
            if n <= 0:
                continue
            jobs.append((split, first, path, image_key, n, png_level))
            first += n
    return jobs, problems


def _run_jobs(root: Path, jobs: list[_Job], workers: int,
              progress: bool) -> list[tuple[str, int, list[str]]]:
    """Run the jobs (in ``workers`` processes when more than one); results in job order."""
    from tqdm import tqdm

    total = sum(j[4] for j in jobs)
    bar = tqdm(total=total, unit="clip", desc="convert-bair", disable=not progress)
    results: list[tuple[str, int, list[str]]] = []
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(_convert_file(root, *job))
            bar.update(job[4])
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_convert_file, root, *job) for job in jobs]
            for job, fut in zip(jobs, futures):
                results.append(fut.result())
                bar.update(job[4])
    bar.close()
    return results


def _convert_file(
    root: Path, split: str, first: int, path: Path, image_key: str, count: int, png_level: int
) -> tuple[str, int, list[str]]:
    """Convert the records of one file into clips ``first, first + 1, ...``."""
    from tfrecord.reader import tfrecord_iterator

    written = 0
    errors: list[str] = []
    index = first
    records = tfrecord_iterator(str(path))
    record_no = 0
    while record_no < count:
        try:
            record = next(records)
        except StopIteration:
            break
        except Exception as exc:  # truncated file: the reader raises RuntimeError
            errors.append(f"{path.name} after record {record_no}: {exc}")
            break
        try:
            data = read_bair_record(record, image_key)
        except ValueError as exc:
            errors.append(f"{path.name} record {record_no}: {exc}")
            record_no += 1
            continue
        clip = root / split / f"{index:05d}"
        _write_clip(clip, data, path.name, record_no, png_level)
        index += 1
        written += 1
        record_no += 1
    return split, written, errors


def _write_clip(
    clip: Path, data: dict[str, Any], source: str, record_no: int, png_level: int
) -> None:
    clip.mkdir(parents=True, exist_ok=True)
    frames = data["frames"]
    for t, frame in enumerate(frames):
        write_png(clip / f"{t:05d}.png", frame, png_level)
    n = len(frames)
    actions = [data["actions"][t].copy() for t in range(n)]
    metadata = [
        {
            "endeffector_pos": data["endeffector_pos"][t].copy(),
            "file": source,
            "record": record_no,
            "step": t,
        }
        for t in range(n)
    ]
    dones = [t == n - 1 for t in range(n)]
    for name, obj in (("actions.pkl", actions), ("metadata.pkl", metadata), ("dones.pkl", dones)):
        with open(clip / name, "wb") as f:
            pickle.dump(obj, f, protocol=4)


def _decode_frame(data: bytes, t: int) -> np.ndarray:
    n = len(data)
    side = int(round((n / 3) ** 0.5))
    if side * side * 3 == n:
        return np.frombuffer(data, dtype=np.uint8).reshape(side, side, 3).copy()
    # Not raw pixels: maybe an encoded image (PNG/JPEG) in other exports.
    import io

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:
        raise ValueError(
            f"step {t}: {n} bytes are neither a raw square RGB frame nor an image ({exc})"
        ) from exc


def _count_records(path: Path) -> tuple[int, str | None]:
    """Count records by walking the length headers (no parsing); report a damaged tail."""
    n = 0
    size = path.stat().st_size
    with open(path, "rb") as f:
        pos = 0
        while pos < size:
            header = f.read(12)
            if len(header) < 12:
                return n, f"truncated record header at byte {pos}"
            (length,) = struct.unpack("<Q", header[:8])
            end = pos + 12 + length + 4
            if end > size:
                return n, f"truncated record at byte {pos} ({length} bytes announced)"
            f.seek(end)
            pos = end
            n += 1
    return n, None


def _traj_key(path: Path) -> tuple[Any, ...]:
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name))


