"""convert-bair on TFRecords written in the exact softmotion30_44k format (tfrecord package)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tfrecord")
from tfrecord.writer import TFRecordWriter  # noqa: E402

from training.data.bair import convert_bair, find_tfrecords, read_bair_record  # noqa: E402
from training.data.layout import DataWarning  # noqa: E402
from training.data.pairs import FramePairDataset  # noqa: E402

STEPS = 30


def bair_record(seed: int) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (STEPS, 64, 64, 3), dtype=np.uint8)
    eef = rng.normal(size=(STEPS, 3)).astype(np.float32)
    act = rng.normal(size=(STEPS, 4)).astype(np.float32)
    datum = {}
    for t in range(STEPS):
        datum[f"{t}/image_aux1/encoded"] = (frames[t].tobytes(), "byte")
        datum[f"{t}/image_main/encoded"] = (frames[t][::-1].tobytes(), "byte")
        datum[f"{t}/endeffector_pos"] = (eef[t].tolist(), "float")
        datum[f"{t}/action"] = (act[t].tolist(), "float")
    return datum, frames, eef, act


def write_tfrecord(path: Path, seeds: list[int]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = TFRecordWriter(str(path))
    truth = []
    for s in seeds:
        datum, frames, eef, act = bair_record(s)
        writer.write(datum)
        truth.append((frames, eef, act))
    writer.close()
    return truth


def test_convert_release_layout(tmp_path):
    src = tmp_path / "softmotion30_44k"
    train = write_tfrecord(src / "train" / "traj_0_to_1.tfrecords", [0, 1])
    train += write_tfrecord(src / "train" / "traj_2_to_2.tfrecords", [2])
    test = write_tfrecord(src / "test" / "traj_0_to_0.tfrecords", [3])
    summary = convert_bair(tmp_path, tmp_path / "out", workers=2)
    assert summary.clips == {"train": 3, "test": 1} and summary.skipped == 0
    for split, truth in (("train", train), ("test", test)):
        for i, (frames, eef, act) in enumerate(truth):
            clip = tmp_path / "out" / split / f"{i:05d}"
            assert len(list(clip.glob("*.png"))) == STEPS
            np.testing.assert_array_equal(np.asarray(Image.open(clip / "00007.png")), frames[7])
            actions = pickle.loads((clip / "actions.pkl").read_bytes())
            meta = pickle.loads((clip / "metadata.pkl").read_bytes())
            dones = pickle.loads((clip / "dones.pkl").read_bytes())
            assert len(actions) == len(meta) == len(dones) == STEPS and dones[-1]
            np.testing.assert_allclose(np.stack(actions), act)
            np.testing.assert_allclose(np.stack([m["endeffector_pos"] for m in meta]), eef)
    ds = FramePairDataset(tmp_path / "out", "train", gap=1, load_actions=True,
                          trust_pickle=True)
    assert len(ds) == 3 * (STEPS - 1)
    assert ds[0]["frame"].shape == (3, 64, 64) and ds[0]["action"].shape == (1, 4)


def test_val_fraction_limit_and_single_file(tmp_path):
    write_tfrecord(tmp_path / "a.tfrecords", [0, 1, 2])
    write_tfrecord(tmp_path / "b.tfrecords", [3])
    assert list(find_tfrecords(tmp_path)) == ["train"]
    summary = convert_bair(tmp_path, tmp_path / "out", val_fraction=0.5, limit=2)
    assert summary.clips == {"train": 2, "val": 1}
    single = convert_bair(tmp_path / "b.tfrecords", tmp_path / "one")
    assert single.clips == {"train": 1}


def test_truncated_file_and_foreign_record_are_skipped(tmp_path):
    path = tmp_path / "train" / "traj.tfrecords"
    write_tfrecord(path, [0, 1])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])  # second record cut
    writer = TFRecordWriter(str(tmp_path / "train" / "other.tfrecords"))
    writer.write({"label": (1, "int")})
    writer.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = convert_bair(tmp_path, tmp_path / "out")
    assert summary.clips == {"train": 1} and summary.skipped == 2
    ours = [w for w in caught if issubclass(w.category, DataWarning)]
    assert len(ours) == 1 and "skipped 2" in str(ours[0].message)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_tfrecords(tmp_path / "missing")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no \\*.tfrecords.*readme.txt"):
        find_tfrecords(tmp_path)
    with pytest.raises(ValueError, match="no '0/image_aux1/encoded'"):
        read_bair_record(TFRecordWriter.serialize_tf_example({"x": (1, "int")}))
