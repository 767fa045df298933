"""``lcvg-data``: make, convert and inspect training data.

Subcommands::

    lcvg-data make sprites   --out DIR --clips N --size 64 --seed S [--frames 30] [--objects 1-3]
                             [--style classic|varied]
    lcvg-data make fetchpush --out DIR --clips N --size 64 --frames 30 --seed S     ([sim] extra)
    lcvg-data make atari --game breakout --out DIR --clips N --size 64 --frames 30 --seed S
    lcvg-data convert-bair SRC DST [--val-fraction F] [--limit N] [--workers W]
    lcvg-data convert-videos SRC DST [--size H W] [--val-fraction F] [--test-fraction F]
    lcvg-data info ROOT [--split train]

The options of each subcommand are the fields of its frozen config dataclass below
(``lcvg_env.configs``); ``make ... --print-config`` prints the resolved config and exits.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lcvg_env.configs import (
    add_config_arguments,
    check_choices,
    config_from_args,
    config_json,
    parse_args,
)
from lcvg_env.world.scene import Style
from training.data.atari import Game

__all__ = [
    "AtariMakeConfig",
    "ConvertBairConfig",
    "ConvertVideosConfig",
    "FetchPushMakeConfig",
    "InfoConfig",
    "RecordingConfig",
    "SpritesMakeConfig",
    "build_parser",
    "main",
]

_SIM_MODULES = {"mujoco", "gymnasium_robotics", "ale_py", "OpenGL", "glfw"}


def parse_objects(text: str) -> tuple[int, int]:
    """Parse ``--objects``: "2", "1-3" or "1,3" into an inclusive range (lo, hi)."""
    try:
        parts = [int(p) for p in text.replace("-", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or LO-HI, got {text!r}") from None
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected N or LO-HI, got {text!r}")
    lo, hi = parts[0], parts[-1]
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 1 <= LO <= HI, got {text!r}")
    return lo, hi


def _check_ints(config: Any, **bounds: tuple[int, int | None]) -> None:
    """Check int fields of ``config`` against inclusive (low, high) bounds; None values pass.

    Raises:
        ValueError: naming the config, the field, the bounds and the value received.
    """
    for name, (low, high) in bounds.items():
        value = getattr(config, name)
        if value is None:
            continue
        if (isinstance(value, bool) or not isinstance(value, int) or value < low
                or (high is not None and value > high)):
            span = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise ValueError(f"{type(config).__name__}.{name} must be an int {span}, "
                             f"got {value!r}")


_PNG_LEVEL = (0, 9)
"""Bounds of every ``png_level`` field."""


@dataclass(frozen=True)
class RecordingConfig:
    """What every ``lcvg-data make`` source takes (a recorder's ``main_make`` reads these)."""

    out: str
    """Output root (created; must be empty)."""
    clips: int
    """Number of clips in all."""
    size: int = 64
    """Frame height and width in pixels (square)."""
    frames: int = 30
    """Frames per clip."""
    seed: int = 0
    """Seed: same seed, same files."""

    def __post_init__(self) -> None:
        """Validate the choices and counts, naming the offending value."""
        check_choices(self)
        _check_ints(self, clips=(1, None), size=(1, None), frames=(1, None))


@dataclass(frozen=True)
class FetchPushMakeConfig(RecordingConfig):
    """``lcvg-data make fetchpush``: FetchPush recordings in MuJoCo ([sim] extra)."""


@dataclass(frozen=True)
class AtariMakeConfig(RecordingConfig):
    """``lcvg-data make atari``: Atari recordings with colour-key ground truth ([sim] extra)."""

    game: Game = "breakout"
    """The game (training.data.atari.GAMES)."""


@dataclass(frozen=True)
class SpritesMakeConfig(RecordingConfig):
    """``lcvg-data make sprites``: procedural sprites with exact ground truth."""

    objects: tuple[int, int] = field(default=(1, 3), metadata={"parse": parse_objects})
    """Objects per clip: N or a range LO-HI (1 is cleanest for control)."""
    style: Style = "classic"
    """Scene style: classic (key colours, 6 shapes, smooth background) or varied (continuous
    colours, 12 shapes, 6 background families, lighting, shadows)."""
    val_fraction: float = 0.1
    """Fraction of the clips in val."""
    test_fraction: float = 0.1
    """Fraction of the clips in test."""
    noise_std: float = 2.0
    """Sensor noise (grey levels)."""
    flicker: float = 0.03
    """Illumination flicker amplitude."""
    outline: float = 0.0
    """Width (pixels) of a dark border just inside objects' edges (0: none): outlined sprites."""
    outline_share: float = 1.0
    """Chance that an object gets that border (each object drawn independently)."""
    workers: int | None = None
    """Processes (None: the CPUs, at most 8)."""
    png_level: int = 0
    """0: uncompressed PNGs, fastest to write and load; 1-9: compressed."""
    overwrite: bool = False
    """Replace a previous sprites dataset at --out."""
    quiet: bool = False
    """No progress bar."""

    def __post_init__(self) -> None:
        """Validate the counts, the choices and the objects range, naming the offending value."""
        super().__post_init__()
        _check_ints(self, workers=(1, None), png_level=_PNG_LEVEL)
        lo, hi = self.objects
        if not 1 <= lo <= hi:
            raise ValueError(f"SpritesMakeConfig.objects must be a range 1 <= lo <= hi, got "
                             f"{self.objects!r}")


@dataclass(frozen=True)
class ConvertBairConfig:
    """Options of ``lcvg-data convert-bair SRC DST``."""

    val_fraction: float = 0.0
    """Move this fraction of the train files to val (the release has none)."""
    limit: int | None = None
    """At most this many records per split (None: all)."""
    workers: int = 1
    """Processes."""
    image_key: str = "image_aux1"
    """Camera view to convert."""
    png_level: int = 0
    """0: uncompressed PNGs, fastest to load; 1-9: compressed, about half the size."""
    quiet: bool = False
    """No progress bar."""

    def __post_init__(self) -> None:
        """Validate the counts, naming the offending value."""
        _check_ints(self, limit=(1, None), workers=(1, None), png_level=_PNG_LEVEL)


@dataclass(frozen=True)
class ConvertVideosConfig:
    """Options of ``lcvg-data convert-videos SRC DST``."""

    size: tuple[int, ...] | None = None
    """Resize and centre-crop: one number (square) or H W (None: keep the videos' size)."""
    val_fraction: float = 0.1
    """Fraction of the videos in val."""
    test_fraction: float = 0.1
    """Fraction of the videos in test."""
    seed: int = 0
    """Seed of the split shuffle."""
    max_frames: int | None = None
    """Frames per video at most (None: all)."""
    png_level: int = 0
    """0: uncompressed PNGs, fastest to load; 1-9: compressed."""

    def __post_init__(self) -> None:
        """Validate the size and counts, naming the offending value."""
        _check_ints(self, max_frames=(1, None), png_level=_PNG_LEVEL)
        if self.size is not None and (len(self.size) not in (1, 2) or min(self.size) < 1):
            raise ValueError(f"ConvertVideosConfig.size takes 1 or 2 positive numbers, got "
                             f"{self.size}")


@dataclass(frozen=True)
class InfoConfig:
    """Options of ``lcvg-data info ROOT``."""

    split: str | None = None
    """One split (None: every split found, or the flat root)."""
    json: bool = False
    """Print JSON."""


def _subcommand(sub: Any, name: str, config: type, run: Callable[..., int], help_text: str,
                description: str, print_config: bool = False) -> argparse.ArgumentParser:
    """Add subcommand ``name`` whose options are the fields of ``config``, run by ``run``."""
    parser = sub.add_parser(name, help=help_text, description=description)
    parser.set_defaults(config_class=config, run=run, parser=parser)
    if print_config:
        parser.add_argument("--print-config", action="store_true",
                            help="print the resolved config as JSON and exit")
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``lcvg-data`` (every flag has help text)."""
    parser = argparse.ArgumentParser(
        prog="lcvg-data", description="Make, convert and inspect lcvg training data."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    make = sub.add_parser("make", help="generate a dataset with ground truth")
    make_sub = make.add_subparsers(dest="source", required=True, metavar="SOURCE")
    makes = (
        ("sprites", SpritesMakeConfig, "procedural sprites (no extra dependency)",
         "Procedural sprites: textured background, 1-3 moving key-coloured objects, exact "
         "ground truth (masks, centroids, boxes) per frame."),
        ("fetchpush", FetchPushMakeConfig, "robot pushing recorded in MuJoCo ([sim] extra)",
         "FetchPush recordings with robot masks and gripper/block positions."),
        ("atari", AtariMakeConfig, "Atari recordings with colour-key ground truth ([sim] extra)",
         "Atari (ale-py) recordings with the player's object masks."),
    )
    for name, config, help_text, description in makes:
        sp = _subcommand(make_sub, name, config, _make, help_text, description,
                         print_config=True)
        add_config_arguments(sp, config)

    cb = _subcommand(sub, "convert-bair", ConvertBairConfig, _convert_bair,
                     "BAIR softmotion30_44k TFRecords -> the clip layout",
                     "Convert the original BAIR robot pushing TFRecords (no TensorFlow needed).")
    cb.add_argument("src", help="softmotion30_44k folder (train/ test/), a folder or a file")
    cb.add_argument("dst", help="output root")
    add_config_arguments(cb, ConvertBairConfig)

    cv = _subcommand(sub, "convert-videos", ConvertVideosConfig, _convert_videos,
                     "your own videos -> the clip layout (fast loading)",
                     "Decode video files (mp4, webm, gif, ...) into train/val/test frame "
                     "folders.")
    cv.add_argument("src", help="a folder of videos (searched recursively) or one video")
    cv.add_argument("dst", help="output root")
    add_config_arguments(cv, ConvertVideosConfig)

    info = _subcommand(sub, "info", InfoConfig, _info, "describe a dataset root",
                       "Count splits, clips, frames and ground truth; describe one sample frame.")
    info.add_argument("root", help="data root")
    add_config_arguments(info, InfoConfig)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lcvg-data``; returns the exit status."""
    args = parse_args(build_parser(), argv)
    config = config_from_args(args.config_class, args, args.parser)
    if getattr(args, "print_config", False):
        print(config_json(config))
        return 0
    try:
        return int(args.run(args, config))
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"lcvg-data: error: {exc}", file=sys.stderr)
        return 1


def _show_progress(quiet: bool) -> bool:
    """Whether to draw a progress bar: not asked to be quiet, and stderr is a terminal."""
    return not quiet and sys.stderr.isatty()


def _make(args: argparse.Namespace, config: RecordingConfig) -> int:
    if isinstance(config, SpritesMakeConfig):
        return _make_sprites(config)
    # The recorders' main_make read the fields as attributes of a namespace.
    return _make_sim(args.source, argparse.Namespace(
        **{f.name: getattr(config, f.name) for f in fields(config)}))


def _make_sprites(config: SpritesMakeConfig) -> int:
    from training.data.sprites import SpritesConfig, generate_sprites

    summary = generate_sprites(
        config.out,
        clips=config.clips,
        seed=config.seed,
        config=SpritesConfig(
            size=config.size,
            frames=config.frames,
            objects=config.objects,
            noise_std=config.noise_std,
            flicker=config.flicker,
            style=config.style,
            outline=config.outline,
            outline_share=config.outline_share,
        ),
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        workers=config.workers,
        overwrite=config.overwrite,
        progress=_show_progress(config.quiet),
        png_level=config.png_level,
    )
    total = sum(summary.clips.values())
    print(
        f"wrote {total} sprite clips to {summary.root} {summary.clips} in {summary.seconds:.1f} s "
        f"({total / max(summary.seconds, 1e-9):.0f} clips/s)"
    )
    return 0


def _make_sim(source: str, args: argparse.Namespace) -> int:
    module_name = f"training.data.{source}"
    try:
        module = importlib.import_module(module_name)
        return int(module.main_make(args))
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in _SIM_MODULES or exc.name == module_name:
            print(
                f"lcvg-data make {source} needs the [sim] extra (missing: {exc.name}).\n"
                "Install it with:  pip install -e '.[sim]'   (gymnasium-robotics, mujoco, ale-py)",
                file=sys.stderr,
            )
            return 2
        raise


def _convert_bair(args: argparse.Namespace, config: ConvertBairConfig) -> int:
    try:
        import tfrecord  # noqa: F401
    except ModuleNotFoundError:
        print(
            "lcvg-data convert-bair needs the tfrecord package: pip install tfrecord "
            "(or the [bair] extra)",
            file=sys.stderr,
        )
        return 2
    from training.data.bair import convert_bair

    start = time.perf_counter()
    summary = convert_bair(
        args.src,
        args.dst,
        val_fraction=config.val_fraction,
        limit=config.limit,
        workers=config.workers,
        image_key=config.image_key,
        progress=_show_progress(config.quiet),
        png_level=config.png_level,
    )
    print(
        f"wrote {sum(summary.clips.values())} BAIR clips to {summary.root} {summary.clips} "
        f"in {time.perf_counter() - start:.1f} s; skipped {summary.skipped}"
    )
    return 0


def _convert_videos(args: argparse.Namespace, config: ConvertVideosConfig) -> int:
    from training.data.video import convert_videos

    size: Any = config.size
    if size is not None and len(size) == 1:
        size = size[0]
    counts = convert_videos(
        args.src,
        args.dst,
        size=size,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
        max_frames=config.max_frames,
        png_level=config.png_level,
    )
    print(f"wrote {sum(counts.values())} clips to {args.dst} {counts}")
    return 0


def _info(args: argparse.Namespace, config: InfoConfig) -> int:
    from training.data.layout import SPLITS, scan_clips

    root = Path(args.root)
    if config.split is not None:
        splits: list[str | None] = [config.split]
    elif root.is_dir() and any((root / s).is_dir() for s in SPLITS):
        splits = [s for s in SPLITS if (root / s).is_dir()]
    else:
        splits = [None]
    report: dict[str, Any] = {"root": str(root), "splits": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for split in splits:
            scan = scan_clips(root, split, "tail")
            entry: dict[str, Any] = {
                "clips": len(scan.clips),
                "frames": sum(c.num_frames for c in scan.clips),
                "with_ground_truth": sum(c.has_ground_truth for c in scan.clips),
                "videos": sum(c.is_video for c in scan.clips),
                "unreadable": len(scan.unreadable),
            }
            if scan.clips:
                entry["sample"] = describe_frame(scan.clips[0])
            report["splits"][split or "(flat)"] = entry
    if config.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{root}")
        for split, entry in report["splits"].items():
            line = ", ".join(f"{k} {v}" for k, v in entry.items() if k != "sample")
            print(f"  {split}: {line}")
            if "sample" in entry:
                print(f"    sample: {entry['sample']}")
    return 0


def describe_frame(clip: Any) -> str:
    """Describe a clip's first frame in one line: size, colour statistics, ground truth."""
    import numpy as np

    from training.data.ground_truth import load_ground_truth
    from training.data.layout import read_image
    from training.data.video import read_video

    frame = read_video(clip.path, max_frames=1)[0] if clip.is_video else read_image(
        clip.frame_path(0)
    )
    h, w = frame.shape[:2]
    mean = frame.reshape(-1, 3).mean(0)
    text = (
        f"{Path(clip.path).name}: {clip.num_frames} frames of {h}x{w} RGB, "
        f"mean colour ({mean[0]:.0f}, {mean[1]:.0f}, {mean[2]:.0f}), std {frame.std():.1f}"
    )
    gt = load_ground_truth(clip.path) if clip.has_ground_truth else None
    if gt is not None:
        fg = float(gt.foreground[0].mean())
        names = ", ".join(gt.names) if gt.names else f"{gt.num_objects} objects"
        cents = "; ".join(
            "hidden" if np.isnan(c).any() else f"({c[0]:.1f}, {c[1]:.1f})" for c in gt.centroids[0]
        )
        text += f"; ground truth: {names}, foreground {100 * fg:.1f}% of pixels, centroids {cents}"
    return text


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
