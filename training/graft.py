"""Put the mask network of one checkpoint into another: a new M under a trained G.

    python -m training.graft --init lcvg_env/assets/sprites_small.safetensors
        --mask-from runs/mask_small/model.safetensors --out runs/grafted.safetensors

A composite generator's stage II and its light estimator take tens of minutes to train; a mask
network fine-tuned apart (stage I on other clips, ``lcvg-train --stage 1 --init ...``) can be
put under them without retraining either. ``--out`` is ``--init`` with every ``mask_net.*``
tensor taken from ``--mask-from``; everything else, the config included, is unchanged, and the
config records where the mask network came from. The two models' mask-network fields must
agree. Prints one JSON object: what was written and how many tensors changed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lcvg_env.checkpoint import (
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    load_weights_strict,
    save_checkpoint,
)
from lcvg_env.configs import parse_config
from lcvg_env.models import LayeredGenerator, stored_model_config

__all__ = ["GraftConfig", "graft_mask_net", "main"]

MASK_FIELDS = ("resolution", "mask_ngf", "mask_n_blocks", "mask_norm", "mask_norm_groups")
"""The ``ModelConfig`` fields that shape the mask network; both checkpoints must agree on them."""


@dataclass(frozen=True)
class GraftConfig:
    """Which checkpoints are combined and where the result goes."""

    init: str = "lcvg_env/assets/sprites_small.safetensors"
    """The checkpoint whose generator (and light estimator) is kept."""
    mask_from: str = ""
    """The checkpoint whose mask network replaces ``init``'s (a run's model.safetensors, or one
    of its checkpoints/*.safetensors)."""
    out: str = "runs/graft/model.safetensors"
    """Where the combined checkpoint is written (atomically)."""

    def __post_init__(self) -> None:
        """Require the three paths, naming the empty one."""
        for name in ("init", "mask_from", "out"):
            if not getattr(self, name):
                raise ValueError(f"GraftConfig.{name} must be a checkpoint path, got ''")


def graft_mask_net(init: str, mask_from: str, out: str | Path) -> dict[str, object]:
    """Write ``init`` with ``mask_from``'s mask network to ``out``; return what was done.

    Raises:
        FileNotFoundError: no such checkpoint.
        CheckpointError: a checkpoint holds no model config, or the two mask networks are built
            differently (the fields are named).
    """
    kept, source = (load_checkpoint(find_checkpoint(path), map_location="cpu")
                    for path in (init, mask_from))
    kept_model, source_model = (stored_model_config(c, path)
                                for c, path in ((kept, init), (source, mask_from)))
    differ = {name: (getattr(kept_model, name), getattr(source_model, name))
              for name in MASK_FIELDS if getattr(kept_model, name) != getattr(source_model, name)}
    if differ:
        raise CheckpointError(f"the mask networks of {init!r} and {mask_from!r} differ in "
                              f"(init, mask_from) = {differ}")
    weights = dict(kept.weights)
    changed = 0
    for name, value in source.weights.items():
        if name.startswith("mask_net."):
            changed += int(not weights[name].equal(value))
            weights[name] = value
    load_weights_strict(LayeredGenerator(kept_model), weights)  # fits, and nothing is missing
    config = dict(kept.config)
    config["mask_net_from"] = {"checkpoint": mask_from, "training": source.config.get("training")}
    written = save_checkpoint(out, weights, config, metadata=kept.metadata)
    return {"out": str(written), "init": init, "mask_from": mask_from,
            "tensors_changed": changed}


def main(argv: Sequence[str] | None = None) -> int:
    """Graft, print the report as JSON."""
    parser = argparse.ArgumentParser(prog="python -m training.graft",
                                     description=__doc__.split("\n")[0])
    config, _ = parse_config(parser, GraftConfig, argv)
    if config is None:  # --print-config
        return 0
    try:
        report = graft_mask_net(config.init, config.mask_from, config.out)
    except (CheckpointError, FileNotFoundError) as error:
        parser.error(str(error))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
