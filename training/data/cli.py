"""``lcvg-data``: make, convert and inspect training data.

Subcommands::

    lcvg-data make sprites   --out DIR --clips N --size 64 --seed S [--frames 30] [--objects 1-3]
                             [--style classic|varied]
    lcvg-data make fetchpush --out DIR --clips N --size 64 --frames 30 --seed S     ([sim] extra)
    lcvg-data make atari --game breakout --out DIR --clips N --size 64 --frames 30 --seed S
    lcvg-data convert-bair SRC DST [--val-fraction F] [--limit N] [--workers W]
    lcvg-data convert-videos SRC DST [--size H W] [--val-fraction F] [--test-fraction F]
    lcvg-data info ROOT [--split train]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main"]

_SIM_MODULES = {"mujoco", "gymnasium_robotics", "ale_py", "OpenGL", "glfw"}
SPRITE_STYLES = ("classic", "varied")
"""``--style`` choices: ``lcvg_env.world.scene.STYLES``, spelled out so that building the parser
imports nothing heavy (tests/training/test_data_cli.py checks that they agree)."""


def _objects(text: str) -> tuple[int, int]:
    """Parse ``--objects``: "2" or "1-3"."""
    try:
        if "-" in text:
            lo, hi = (int(p) for p in text.split("-", 1))
        else:
            lo = hi = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or LO-HI, got {text!r}") from None
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 1 <= LO <= HI, got {text!r}")
    return lo, hi


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_recording_args(parser: argparse.ArgumentParser) -> None:
    """Add the options every simulator recorder takes (its ``main_make`` reads them)."""
    parser.add_argument("--out", required=True, help="output root")
    parser.add_argument("--clips", type=_positive, required=True, help="number of clips")
    parser.add_argument("--size", type=_positive, default=64, help="frame size in pixels")
    parser.add_argument("--frames", type=_positive, default=30, help="frames per clip")
    parser.add_argument("--seed", type=int, default=0, help="seed")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``lcvg-data`` (every flag has help text)."""
    parser = argparse.ArgumentParser(
        prog="lcvg-data", description="Make, convert and inspect lcvg training data."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    make = sub.add_parser("make", help="generate a dataset with ground truth")
    make_sub = make.add_subparsers(dest="source", required=True, metavar="SOURCE")

    sp = make_sub.add_parser(
        "sprites", help="procedural sprites (no extra dependency)",
        description="Procedural sprites: textured background, 1-3 moving key-coloured objects, "
        "exact ground truth (masks, centroids, boxes) per frame.",
    )
    sp.add_argument("--out", required=True, help="output root (created; must be empty)")
    sp.add_argument("--clips", type=_positive, required=True, help="number of clips in all")
    sp.add_argument("--size", type=_positive, default=64, help="frame size in pixels (square)")
    sp.add_argument("--frames", type=_positive, default=30, help="frames per clip")
    sp.add_argument("--seed", type=int, default=0, help="seed: same seed, same files")
    sp.add_argument(
        "--objects", type=_objects, default=(1, 3),
        help="objects per clip: N or a range LO-HI (default 1-3; 1 is cleanest for control)",
    )
    sp.add_argument(
        "--style", default="classic", choices=SPRITE_STYLES,
        help="scene style: classic (key colours, 6 shapes, smooth background; default) or "
        "varied (continuous colours, 12 shapes, 6 background families, lighting, shadows)",
    )
    sp.add_argument("--val-fraction", type=float, default=0.1, help="fraction of clips in val")
    sp.add_argument("--test-fraction", type=float, default=0.1, help="fraction of clips in test")
    sp.add_argument("--noise-std", type=float, default=2.0, help="sensor noise (grey levels)")
    sp.add_argument("--flicker", type=float, default=0.03, help="illumination flicker amplitude")
    sp.add_argument("--workers", type=int, default=None, help="processes (default: CPUs, <= 8)")
    sp.add_argument(
        "--png-level", type=int, default=0, choices=range(10), metavar="0-9",
        help="0: uncompressed PNGs, fastest to write and load (default); 1-9: compressed",
    )
    sp.add_argument(
        "--overwrite", action="store_true", help="replace a previous sprites dataset at --out"
    )
    sp.add_argument("--quiet", action="store_true", help="no progress bar")

    fp = make_sub.add_parser(
        "fetchpush", help="robot pushing recorded in MuJoCo ([sim] extra)",
        description="FetchPush recordings with robot masks and gripper/block positions.",
    )
    _add_recording_args(fp)

    at = make_sub.add_parser(
        "atari", help="Atari recordings with colour-key ground truth ([sim] extra)",
        description="Atari (ale-py) recordings with the player's object masks.",
    )
    at.add_argument(
        "--game", choices=("breakout", "tennis", "pong"), default="breakout", help="the game"
    )
    _add_recording_args(at)

    cb = sub.add_parser(
        "convert-bair", help="BAIR softmotion30_44k TFRecords -> the clip layout",
        description="Convert the original BAIR robot pushing TFRecords (no TensorFlow needed).",
    )
    cb.add_argument("src", help="softmotion30_44k folder (train/ test/), a folder or a file")
    cb.add_argument("dst", help="output root")
    cb.add_argument(
        "--val-fraction", type=float, default=0.0,
        help="move this fraction of the train files to val (the release has none)",
    )
    cb.add_argument("--limit", type=_positive, default=None, help="at most N records per split")
    cb.add_argument("--workers", type=_positive, default=1, help="processes")
    cb.add_argument("--image-key", default="image_aux1", help="camera view to convert")
    cb.add_argument(
        "--png-level", type=int, default=0, choices=range(10), metavar="0-9",
        help="0: uncompressed PNGs, fastest to load (default); 1-9: compressed, ~half the size",
    )
    cb.add_argument("--quiet", action="store_true", help="no progress bar")

    cv = sub.add_parser(
        "convert-videos", help="your own videos -> the clip layout (fast loading)",
        description="Decode video files (mp4, webm, gif, ...) into train/val/test frame folders.",
    )
    cv.add_argument("src", help="a folder of videos (searched recursively) or one video")
    cv.add_argument("dst", help="output root")
    cv.add_argument(
        "--size", type=_positive, nargs="+", default=None, metavar="N",
        help="resize and centre-crop: one number (square) or H W",
    )
    cv.add_argument("--val-fraction", type=float, default=0.1, help="fraction of videos in val")
    cv.add_argument("--test-fraction", type=float, default=0.1, help="fraction in test")
    cv.add_argument("--seed", type=int, default=0, help="seed of the split shuffle")
    cv.add_argument("--max-frames", type=_positive, default=None, help="frames per video at most")
    cv.add_argument(
        "--png-level", type=int, default=0, choices=range(10), metavar="0-9",
        help="0: uncompressed PNGs, fastest to load (default); 1-9: compressed",
    )

    info = sub.add_parser(
        "info", help="describe a dataset root",
        description="Count splits, clips, frames and ground truth; describe one sample frame.",
    )
    info.add_argument("root", help="data root")
    info.add_argument(
        "--split", default=None, help="one split (default: every split found, or the flat root)"
    )
    info.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lcvg-data``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "make":
            if args.source == "sprites":
                return _make_sprites(args)
            return _make_sim(args.source, args)
        if args.command == "convert-bair":
            return _convert_bair(args)
        if args.command == "convert-videos":
            return _convert_videos(args)
        if args.command == "info":
            return _info(args)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"lcvg-data: error: {exc}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2  # pragma: no cover


def _make_sprites(args: argparse.Namespace) -> int:
    from training.data.sprites import SpritesConfig, generate_sprites

    config = SpritesConfig(
        size=args.size,
        frames=args.frames,
        objects=args.objects,
        noise_std=args.noise_std,
        flicker=args.flicker,
        style=args.style,
    )
    summary = generate_sprites(
        args.out,
        clips=args.clips,
        seed=args.seed,
        config=config,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.quiet and sys.stderr.isatty(),
        png_level=args.png_level,
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


def _convert_bair(args: argparse.Namespace) -> int:
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
        val_fraction=args.val_fraction,
        limit=args.limit,
        workers=args.workers,
        image_key=args.image_key,
        progress=not args.quiet and sys.stderr.isatty(),
        png_level=args.png_level,
    )
    print(
        f"wrote {sum(summary.clips.values())} BAIR clips to {summary.root} {summary.clips} "
        f"in {time.perf_counter() - start:.1f} s; skipped {summary.skipped}"
    )
    return 0


def _convert_videos(args: argparse.Namespace) -> int:
    from training.data.video import convert_videos

    size: Any = None
    if args.size is not None:
        if len(args.size) not in (1, 2):
            raise ValueError(f"--size takes 1 or 2 numbers, got {args.size}")
        size = tuple(args.size) if len(args.size) == 2 else args.size[0]
    counts = convert_videos(
        args.src,
        args.dst,
        size=size,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        max_frames=args.max_frames,
        png_level=args.png_level,
    )
    print(f"wrote {sum(counts.values())} clips to {args.dst} {counts}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from training.data.layout import SPLITS, scan_clips

    root = Path(args.root)
    if args.split is not None:
        splits: list[str | None] = [args.split]
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
    if args.json:
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
