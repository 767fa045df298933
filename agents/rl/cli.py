"""``lcvg-rl``: train reach agents in a learned simulator, judge them in its real twin.

    lcvg-rl train --env LCVG-Sprites-Reach-v0 --algo ppo --steps 200000 --envs 8 --out DIR
    lcvg-rl train --resume DIR [--steps N]
    lcvg-rl eval --policy DIR/best.zip --env LCVG-Sprites-Reach-Real-v0 --episodes 100
    lcvg-rl mimic --driving CLIP_DIR --frame twin:0 --out DIR

Every field of the command's config dataclass (``agents.rl.config``) is a flag, spelled with
dashes (``--n-steps``; ``lcvg_env.configs`` builds them, as for the project's other commands);
``lcvg-rl COMMAND --help`` lists them with their documentation.
``eval`` and ``mimic`` print one JSON object on stdout; ``train`` prints progress lines, then
one JSON summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.rl.config import EvalConfig, MimicConfig, TrainConfig
from lcvg_env.configs import add_config_arguments, config_from_args, parse_args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lcvg-rl",
        description="Train reach agents in a learned simulator, judge them in its real twin.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a PPO or SAC reach agent")
    add_config_arguments(train, TrainConfig)
    train.add_argument("--resume", metavar="DIR", default=None,
                       help="continue the run in DIR (its config.json; flags given override it)")
    evaluate = commands.add_parser("eval", help="evaluate a policy; prints one JSON object")
    add_config_arguments(evaluate, EvalConfig)
    mimic = commands.add_parser("mimic", help="replay a driving clip's motion from another frame")
    add_config_arguments(mimic, MimicConfig)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lcvg-rl``; returns the exit status (2 for bad arguments, as argparse)."""
    parser = _parser()
    args = parse_args(parser, argv)
    try:
        if args.command == "train":
            return _train(parser, args)
        if args.command == "eval":
            from agents.rl.evaluate import evaluate

            config = _with_threads(config_from_args(EvalConfig, args, parser))
            print(json.dumps(evaluate(config)))
            return 0
        from agents.rl.mimic import mimic

        print(json.dumps(mimic(_with_threads(config_from_args(MimicConfig, args, parser)))))
        return 0
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"lcvg-rl {args.command}: {error}", file=sys.stderr)
        return 2


def _with_threads(config: Any) -> Any:
    """Apply ``config.threads`` (torch CPU threads; 0 keeps torch's choice); returns config."""
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    return config


def _train(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from agents.rl.train import CONFIG_FILE, as_json, train

    if args.resume is None:
        config = _with_threads(config_from_args(TrainConfig, args, parser))
        print(as_json(train(config)))
        return 0
    folder = Path(args.resume)
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"cannot resume {folder}: no {CONFIG_FILE} there")
    saved = dataclasses.replace(TrainConfig.load(folder / CONFIG_FILE), out=str(folder))
    config = _with_threads(config_from_args(saved, args, parser))
    if Path(config.out).resolve() != folder.resolve():
        raise ValueError(f"--resume {folder} continues that run: drop --out {config.out}")
    print(as_json(train(config, resume=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
