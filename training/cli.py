"""Command lines: ``lcvg-train`` (:func:`train_main`) and ``lcvg-eval`` (:func:`eval_main`).

Every field of :class:`training.config.TrainConfig` (and of the nested model config, as
``--model.<field>``) is a flag; ``--help`` lists them with their documentation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from lcvg_env.simulator import SIM_TRACKING
from training.config import (
    ABLATIONS,
    PRESETS,
    add_config_arguments,
    apply_overrides,
    config_overrides,
    preset,
)


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
    add_config_arguments(parser, preset("small"), shown_as="small preset")
    return parser


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of ``lcvg-train``; returns 0 when finished, 130 when stopped early."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _train_parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = config_overrides(args)
    if args.steps is not None:
        overrides["stage1_steps"] = overrides["stage2_steps"] = args.steps
    from training.loop import config_from_run, train

    if args.resume:
        config = config_from_run(args.resume)
        if overrides:
            config = apply_overrides(config, overrides)
        out = args.resume
    else:
        if not args.out and not args.print_config:
            parser.error("--out RUN_DIR is required (or --resume RUN_DIR)")
        config = apply_overrides(preset(args.preset), overrides)
        out = args.out
    if args.print_config:
        print(config.to_json())
        return 0
    if config.ablate and config.ablate not in ABLATIONS:
        parser.error(f"--ablate must be one of {ABLATIONS}")
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


_EVAL_DATA_DEFAULTS = {"split": "test", "clips": 32, "horizon": 16, "fit_iterations": 16,
                       "gif_clips": 4}
"""Defaults of the dataset evaluation's options (they are None in the parser, so that giving
one together with ``--world`` is an error rather than silently ignored)."""
_PAIRED_OPTIONS = ("episodes", "steps", "program", "style", "objects", "threads")
"""Options of the paired evaluation only (``--world``)."""


def _eval_parser() -> argparse.ArgumentParser:
    from training.paired import PROGRAMS, STYLES, WORLDS

    parser = argparse.ArgumentParser(
        prog="lcvg-eval",
        description="Evaluate a generator checkpoint against ground truth (mask IoU, position "
                    "/ affine / non-parametric control rollouts, PSNR, SSIM) on a dataset "
                    "(--data), or, with --world, in a paired evaluation against the world's "
                    "ground-truth twin run with the same actions, beside a copy-paste "
                    "baseline (training.paired).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="generator checkpoint (a run's model.safetensors, or a name)")
    parser.add_argument("--data", default=None,
                        help="dataset root with ground truth (required without --world)")
    parser.add_argument("--out", required=True, help="output folder (eval.json, plot, gif)")
    parser.add_argument("--split", default=None, help="held-out split to use (default: test)")
    parser.add_argument("--clips", type=int, default=None, help="number of clips (default: 32)")
    parser.add_argument("--horizon", type=int, default=None,
                        help="rollout length T (default: 16)")
    parser.add_argument("--fit-iterations", type=int, default=None,
                        help="refinement iterations of the control fits (default: 16)")
    parser.add_argument("--gif-clips", type=int, default=None,
                        help="clips shown in rollouts.gif (default: 4)")
    parser.add_argument("--whole-pixel", action="store_true",
                        help="round each step's mask motion to whole pixels (the paper's "
                             "warp-and-binarise) instead of carrying the sub-pixel remainder")
    parser.add_argument("--tracking", choices=SIM_TRACKING, default=None,
                        help="masks the controls move, as LCVGEnv's tracking: M's mask of each "
                             "generated frame (the paper), the first frame's object masks "
                             "carried, or carried while M agrees (default: segment)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--seed", type=int, default=0,
                        help="torch seed; with --world also the seed of the scenes and actions")
    paired = parser.add_argument_group("paired evaluation (--world)")
    paired.add_argument("--world", choices=WORLDS, default=None,
                        help="run the paired evaluation in this world instead of --data")
    paired.add_argument("--episodes", type=int, default=None, help="episodes (default: 64)")
    paired.add_argument("--steps", type=int, default=None,
                        help="steps per episode (default: 100)")
    paired.add_argument("--program", choices=PROGRAMS, default=None,
                        help="scripted actions (default: random)")
    paired.add_argument("--style", choices=STYLES, default=None,
                        help="scene style (default: classic)")
    paired.add_argument("--objects", type=int, nargs="+", default=None, metavar="K",
                        help="numbers of objects; episodes are split evenly (default: 1 2)")
    paired.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    return parser


def eval_main(argv: list[str] | None = None) -> int:
    """Entry point of ``lcvg-eval``: writes OUT/eval.json and prints the summary.

    Without ``--world``: the dataset evaluation of ``training.evaluate`` (``--data`` required).
    With ``--world``: the paired evaluation of ``training.paired`` (``--data`` and the other
    dataset options must not be given); prints its flat JSON summary.
    """
    parser = _eval_parser()
    args = parser.parse_args(argv)
    if args.world is not None:
        return _paired_main(parser, args)
    given = [f"--{name.replace('_', '-')}" for name in _PAIRED_OPTIONS
             if getattr(args, name) is not None]
    if given:
        parser.error(f"{', '.join(given)} belong to the paired evaluation: give --world "
                     "(or drop them)")
    if args.data is None:
        parser.error("the following arguments are required: --data (or give --world for the "
                     "paired evaluation)")
    for name, value in _EVAL_DATA_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    from lcvg_env.models import LayeredGenerator
    from training.evaluate import _json_safe, evaluate, summarize

    torch.manual_seed(args.seed)
    try:
        model = LayeredGenerator.from_checkpoint(args.checkpoint, device=args.device)
        result = evaluate(model, args.data, args.out, split=args.split, num_clips=args.clips,
                          horizon=args.horizon, fit_iterations=args.fit_iterations,
                          gif_clips=args.gif_clips, subpixel=not args.whole_pixel,
                          tracking=args.tracking or "segment")
    except (FileNotFoundError, ValueError) as err:
        print(f"lcvg-eval: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(_json_safe(summarize(result)), indent=2))
    print(f"lcvg-eval: wrote {Path(args.out) / 'eval.json'}")
    return 0


def _paired_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``lcvg-eval --world ...``: the paired evaluation; prints the flat JSON summary."""
    given = [f"--{name.replace('_', '-')}" for name in ("data", *_EVAL_DATA_DEFAULTS)
             if getattr(args, name) is not None]
    if args.whole_pixel:
        given.append("--whole-pixel")
    if given:
        parser.error(f"{', '.join(given)} belong to the dataset evaluation and cannot be "
                     f"combined with --world {args.world}")
    from training.paired import PairedConfig, _json_safe, run_paired

    fields = {name: getattr(args, name) for name in _PAIRED_OPTIONS
              if getattr(args, name) is not None}
    if "objects" in fields:
        fields["objects"] = tuple(fields["objects"])
    torch.manual_seed(args.seed)
    try:
        config = PairedConfig(world=args.world, seed=args.seed, tracking=args.tracking,
                              device=args.device, **fields)
        result = run_paired(config, args.checkpoint, out=args.out,
                            progress=lambda line: print(f"lcvg-eval: {line}", file=sys.stderr))
    except (FileNotFoundError, ValueError) as err:
        print(f"lcvg-eval: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(_json_safe(result["summary"]), indent=2))
    print(f"lcvg-eval: wrote {', '.join(result['files'].values())}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # python -m training.cli / torchrun -m training.cli: lcvg-train
    sys.exit(train_main())
