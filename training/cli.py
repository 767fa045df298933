"""Command lines: ``lcvg-train`` (:func:`train_main`) and ``lcvg-eval`` (:func:`eval_main`).

Both are generated from frozen config dataclasses (``lcvg_env.configs``). Every field of
:class:`training.config.TrainConfig` (the nested model config as ``--model.<field>``) is a flag of
lcvg-train; lcvg-eval's flags are the fields of :class:`EvalConfig` (below; a dataset,
``--data``) and of :class:`training.paired.PairedConfig` (a paired evaluation, ``--world``),
named like lcvg-train's where they mean the same (``--eval-clips``, ``--fit-iterations``).
``--help`` lists them with their documentation; ``--print-config`` prints the resolved config.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from lcvg_env.configs import (
    add_config_arguments,
    apply_overrides,
    check_choices,
    check_ints,
    config_from_args,
    config_json,
    config_overrides,
    flag_name,
    parse_args,
)
from lcvg_env.tracking import Tracking
from training.config import PRESETS, preset
from training.jsonable import json_safe


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lcvg-train",
        description="Train the layered controllable video generator (stage I, then stage II).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", choices=PRESETS, default="small",
                        help="starting values of every field")
    parser.add_argument("--out", default=None, help="run folder (required unless --resume)")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR",
                        help="continue the run in RUN_DIR exactly where it stopped")
    parser.add_argument("--steps", type=int, default=None,
                        help="shortcut: set stage1_steps and stage2_steps to N")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as JSON and exit")
    # The underscore spellings (--batch_size) stay accepted, hidden, for older run commands.
    add_config_arguments(parser, preset("small"), exclude=("preset",), shown_as="small preset",
                         title="training config fields", underscore_aliases=True)
    return parser


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of ``lcvg-train``; returns 0 when finished, 130 when stopped early."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _train_parser()
    args = parse_args(parser, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = config_overrides(args)
    if args.steps is not None:
        overrides["stage1_steps"] = overrides["stage2_steps"] = args.steps
    from training.loop import config_from_run, train

    if args.resume:
        base = config_from_run(args.resume)
        out = args.resume
    else:
        if not args.out and not args.print_config:
            parser.error("--out RUN_DIR is required (or --resume RUN_DIR)")
        base = preset(args.preset)
        out = args.out
    try:
        config = apply_overrides(base, overrides)
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    if args.print_config:
        print(config.to_json())
        return 0
    try:
        trainer = train(config, out, resume=bool(args.resume), argv=["lcvg-train", *argv])
    except (FileNotFoundError, ValueError) as err:
        print(f"lcvg-train: error: {err}", file=sys.stderr)
        return 2
    if not getattr(trainer, "finished", False):
        print(f"lcvg-train: stopped at step {trainer.step}; resume with --resume {out}",
              file=sys.stderr)
        return 130
    if trainer.dist.is_main:
        print(f"lcvg-train: done, model at {trainer.run.model_path}")
    return 0


@dataclass(frozen=True)
class EvalConfig:
    """What ``lcvg-eval`` scores on a dataset (``training.evaluate.evaluate``'s arguments).

    Fields that ``training.config.TrainConfig`` holds too have its names (``data``,
    ``eval_split``, ``eval_clips``, ``eval_horizon``, ``fit_iterations``, ``device``, ``seed``),
    so that both command lines spell them the same way.
    """

    data: str = ""
    """Dataset root with ground truth, in the folder-per-clip layout."""
    eval_split: str = "test"
    """Held-out split to score."""
    eval_clips: int = 32
    """Held-out clips scored (each needs eval_horizon + 1 frames and ground truth)."""
    eval_horizon: int = 16
    """Rollout length T of the control protocols."""
    fit_iterations: int = 16
    """Refinement iterations of the per-step control fits (lcvg_env.control.fit_control)."""
    gif_clips: int = 4
    """Clips shown in rollouts.gif."""
    whole_pixel: bool = False
    """Round each step's mask motion to whole pixels (the paper's warp-and-binarise) instead of
    carrying the sub-pixel remainder; only with tracking "segment"."""
    tracking: Tracking | None = None
    """Masks the controls move, as LCVGEnv's tracking: M's mask of each generated frame
    ("segment", the paper), the first frame's object masks carried ("carry"), or carried while
    M agrees ("anchored"). None: "segment" here, the environment's default in a paired
    evaluation."""
    device: str = "auto"
    """Torch device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1"..."""
    seed: int = 0
    """Torch seed (a paired evaluation also draws its scenes and actions from it)."""

    def __post_init__(self) -> None:
        """Validate the choices and counts, naming the offending value."""
        check_choices(self)
        check_ints(self, {"eval_clips": 1, "eval_horizon": 1, "fit_iterations": 1,
                          "gif_clips": 0})


_SHARED = ("device", "seed", "tracking")
"""Fields of both EvalConfig and PairedConfig: one flag each, read by whichever runs."""


def _names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def _eval_parser() -> argparse.ArgumentParser:
    from training.paired import PairedConfig

    parser = argparse.ArgumentParser(
        prog="lcvg-eval",
        description="Evaluate a generator checkpoint against ground truth (mask IoU, position "
                    "/ affine / non-parametric control rollouts, PSNR, SSIM) on a dataset "
                    "(--data), or, with --world, in a paired evaluation against the world's "
                    "ground-truth twin run with the same actions, beside a copy-paste "
                    "baseline (training.paired). --device, --seed and --tracking apply to both.")
    parser.add_argument("--checkpoint", default=None,
                        help="generator checkpoint (a run's model.safetensors, or a name); "
                             "required")
    parser.add_argument("--out", default=None,
                        help="output folder (eval.json, plot, gif); required")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as JSON and exit")
    # --split, --clips and --horizon: lcvg-eval's names before it took TrainConfig's (hidden).
    add_config_arguments(parser, EvalConfig, title="dataset evaluation (--data)",
                         aliases={"eval_split": ["--split"], "eval_clips": ["--clips"],
                                  "eval_horizon": ["--horizon"]})
    add_config_arguments(parser, PairedConfig, exclude=_SHARED,
                         title="paired evaluation (--world)")
    return parser


def eval_main(argv: list[str] | None = None) -> int:
    """Entry point of ``lcvg-eval``: writes OUT/eval.json and prints the summary.

    Without ``--world``: the dataset evaluation of ``training.evaluate`` (``--data`` required).
    With ``--world``: the paired evaluation of ``training.paired`` (``--data`` and the other
    dataset options must not be given); prints its flat JSON summary.
    """
    from training.paired import PairedConfig

    parser = _eval_parser()
    args = parse_args(parser, argv)
    given = config_overrides(args)
    if "world" in given:
        return _paired_main(parser, args, given)
    heads = {name.partition(".")[0]: name for name in given}  # scene.texture -> scene
    paired_only = sorted(heads[head] for head in set(heads) & (_names(PairedConfig)
                                                              - _names(EvalConfig)))
    if paired_only:
        parser.error(f"{', '.join(map(flag_name, paired_only))} belong to the paired "
                     "evaluation: give --world (or drop them)")
    config = config_from_args(EvalConfig, args, parser)
    if args.print_config:
        print(config_json(config))
        return 0
    _require_io(parser, args)
    if not config.data:
        parser.error("the following arguments are required: --data (or give --world for the "
                     "paired evaluation)")
    from lcvg_env.models import LayeredGenerator
    from training.evaluate import evaluate, summarize

    torch.manual_seed(config.seed)
    try:
        model = LayeredGenerator.from_checkpoint(args.checkpoint, device=config.device)
        result = evaluate(model, config.data, args.out, split=config.eval_split,
                          num_clips=config.eval_clips, horizon=config.eval_horizon,
                          fit_iterations=config.fit_iterations, gif_clips=config.gif_clips,
                          subpixel=not config.whole_pixel, tracking=config.tracking or "segment")
    except (FileNotFoundError, ValueError) as err:
        print(f"lcvg-eval: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(json_safe(summarize(result)), indent=2))
    print(f"lcvg-eval: wrote {Path(args.out) / 'eval.json'}")
    return 0


def _require_io(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    missing = [flag for flag in ("--checkpoint", "--out") if getattr(args, flag[2:]) is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")


def _paired_main(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 given: dict[str, Any]) -> int:
    """``lcvg-eval --world ...``: the paired evaluation; prints the flat JSON summary."""
    from training.paired import PairedConfig, run_paired

    data_only = sorted(set(given) & (_names(EvalConfig) - _names(PairedConfig)))
    if data_only:
        parser.error(f"{', '.join(map(flag_name, data_only))} belong to the dataset evaluation "
                     f"and cannot be combined with --world {given['world']}")
    config = config_from_args(PairedConfig, args, parser)
    if args.print_config:
        print(config_json(config))
        return 0
    _require_io(parser, args)
    torch.manual_seed(config.seed)
    try:
        result = run_paired(config, args.checkpoint, out=args.out,
                            progress=lambda line: print(f"lcvg-eval: {line}", file=sys.stderr))
    except (FileNotFoundError, ValueError) as err:
        print(f"lcvg-eval: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(json_safe(result["summary"]), indent=2))
    print(f"lcvg-eval: wrote {', '.join(result['files'].values())}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # python -m training.cli / torchrun -m training.cli: lcvg-train
    sys.exit(train_main())
