"""One checkpoint format for every lcvg model, and where checkpoints are looked up.

A checkpoint is a single ``.safetensors`` file:

- tensors ``model/<key>``: the module's ``state_dict()`` (e.g. ``LayeredGenerator``);
- tensors ``state/<n>``: every tensor found in the training state (optimiser moments, RNG states);
- the safetensors metadata entry ``lcvg`` holds JSON: ``format``, ``format_version``, ``config``
  (model and training config dicts), ``metadata`` (free-form, e.g. the command that made it) and
  ``training_state``, the nested training state with each tensor replaced by a reference.

Nothing is unpickled, ever: loading a checkpoint cannot execute code. Loading refuses weights
holding NaN or infinite values (a diverged run's model renders nothing but black frames). Files
are written to a temporary name in the same folder and renamed, so a crash mid-write never
leaves a truncated checkpoint where a good one was.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

FORMAT_NAME = "lcvg"
FORMAT_VERSION = 1
CHECKPOINT_DIR_ENV = "LCVG_CHECKPOINT_DIR"
"""Environment variable naming a folder of checkpoints, searched after an explicit path."""
CHECKPOINT_SUFFIX = ".safetensors"
"""File suffix of checkpoints; a name given without a suffix is also looked up with it."""

_MODEL_PREFIX = "model/"
_STATE_PREFIX = "state/"
_REF = "__tensor__"
_NDARRAY = "__ndarray__"
_TUPLE = "__tuple__"


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, of another format, or does not fit the module."""


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns."""

    weights: dict[str, torch.Tensor]
    """The module's state dict, keys as ``state_dict()`` gives them."""
    config: dict[str, Any]
    """Config dicts, e.g. ``{"model": ModelConfig.to_dict(), "training": {...}}``."""
    training_state: Any = None
    """Nested training state as saved (tensors and arrays restored), or None."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Free-form JSON metadata saved with the checkpoint."""
    format_version: int = FORMAT_VERSION
    """Format version of the file."""


def save_checkpoint(
    path: str | os.PathLike[str],
    weights: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    training_state: Any = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically and return its path.

    Args:
        path: destination file (conventionally ``*.safetensors``); parent folders are created.
        weights: a module ``state_dict()``: name -> tensor of any shape.
        config: JSON-safe dict of configs.
        training_state: any nesting of dict (str keys), list, tuple, int, float, str, bool, None,
            ``torch.Tensor`` and ``np.ndarray`` (optimiser state dicts, RNG states, counters).
        metadata: JSON-safe free-form information.
    """
    path = Path(path)
    if not isinstance(weights, Mapping):
        raise TypeError(
            f"weights must be a mapping of name -> tensor, got {type(weights).__name__}"
        )
    tensors: dict[str, torch.Tensor] = {}
    for name, value in weights.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"weights[{name!r}] must be a torch.Tensor, got {type(value).__name__}")
        tensors[_MODEL_PREFIX + name] = _storable(value)
    skeleton = _flatten(training_state, tensors)
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": dict(config),
        "metadata": dict(metadata or {}),
        "training_state": skeleton,
    }
    try:
        header_json = json.dumps(header)
    except TypeError as error:
        raise TypeError(f"config, metadata and training_state must be JSON-safe: {error}") from None

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = str(path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        # the mode open() gives (0666 less the umask); safetensors writes 0600, too private
        os.close(os.open(tmp_name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        mode = stat.S_IMODE(os.stat(tmp_name).st_mode)
        save_file(tensors, tmp_name, metadata={FORMAT_NAME: header_json})
        os.chmod(tmp_name, mode)
        with open(tmp_name, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    *,
    check_finite: bool = True,
) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``.

    Args:
        path: the checkpoint file.
        map_location: device the tensors are loaded to.
        check_finite: refuse floating-point weights (the ``model/`` tensors) holding NaN or
            infinite values. False loads them anyway, e.g. to inspect a diverged run.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        CheckpointError: the file is truncated, not safetensors, not an lcvg checkpoint, has a
            malformed header, or (``check_finite``) holds non-finite weights, naming the
            tensors and the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {str(path)!r}")
    file_metadata, tensors = _read_safetensors(path, map_location)
    header = _lcvg_header(path, file_metadata)
    version = header["format_version"]
    weights = {
        name[len(_MODEL_PREFIX) :]: value
        for name, value in tensors.items()
        if name.startswith(_MODEL_PREFIX)
    }
    if check_finite:
        _check_finite(weights, path)
    config, metadata = header.get("config", {}), header.get("metadata", {})
    for entry, value in (("config", config), ("metadata", metadata)):
        if not isinstance(value, dict):
            raise CheckpointError(
                f"{str(path)!r} has a corrupt lcvg header: its {entry} is a "
                f"{type(value).__name__}, not an object"
            )
    try:
        training_state = _unflatten(header.get("training_state"), tensors)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{str(path)!r} has a corrupt training state (a reference to a missing or "
            f"malformed tensor: {error!r})"
        ) from None
    return Checkpoint(
        weights=weights,
        config=config,
        training_state=training_state,
        metadata=metadata,
        format_version=version,
    )


def read_checkpoint_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint's lcvg header alone, without any tensor.

    The header holds ``config``, ``metadata``, ``format_version`` and the ``training_state``
    with its tensors left as references.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        CheckpointError: as :func:`load_checkpoint` for an unreadable file or header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {str(path)!r}")
    return _lcvg_header(path, _read_safetensors(path, "cpu", tensors=False)[0])


def _read_safetensors(path: Path, map_location: str | torch.device, tensors: bool = True
                      ) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Read the metadata and (``tensors``) the tensors of the safetensors ``path``.

    Tensors are loaded to ``map_location``; without ``tensors`` the dict is empty.

    Raises:
        CheckpointError: the file is unreadable (truncated or another format), naming it and
            its size.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            file_metadata = handle.metadata() or {}
        loaded = load_file(str(path), device=str(torch.device(map_location))) if tensors else {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        size = path.stat().st_size
        raise CheckpointError(
            f"{str(path)!r} ({size} bytes) is not a readable safetensors file "
            f"(truncated or another format?): {error}"
        ) from None
    return file_metadata, loaded


def _lcvg_header(path: Path, file_metadata: Mapping[str, str]) -> dict[str, Any]:
    """Parse the lcvg header (a JSON object) in a safetensors file's metadata.

    Raises:
        CheckpointError: no lcvg entry (another program's safetensors), corrupt JSON, or a
            ``format_version`` newer than :data:`FORMAT_VERSION`, naming the file.
    """
    if FORMAT_NAME not in file_metadata:
        raise CheckpointError(
            f"{str(path)!r} is a safetensors file but not an lcvg checkpoint: its metadata has "
            f"keys {sorted(file_metadata)}, not {FORMAT_NAME!r}. Released checkpoints of the "
            "authors' code are converted with `lcvg-convert-official`."
        )
    try:
        header = json.loads(file_metadata[FORMAT_NAME])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{str(path)!r} has a corrupt lcvg header: {error}") from None
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{str(path)!r} has a corrupt lcvg header: a JSON {type(header).__name__}, not an "
            "object"
        )
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has format_version {version!r}; this lcvg reads versions up to "
            f"{FORMAT_VERSION}. Upgrade lcvg to read it."
        )
    return header


def _check_finite(weights: Mapping[str, torch.Tensor], path: Path) -> None:
    """Raise CheckpointError naming every floating-point weight with NaN or inf values."""
    bad = []
    for name, tensor in weights.items():
        if not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        finite = torch.isfinite(tensor)
        if bool(finite.all()):
            continue
        nan = int(torch.isnan(tensor).sum())
        inf = int((~finite).sum()) - nan
        bad.append(f"{name} ({nan} NaN, {inf} inf of {tensor.numel()} values)")
    if bad:
        raise CheckpointError(
            f"{str(path)!r} holds non-finite weights in {len(bad)} tensor(s): {_preview(bad)}. "
            "A model with such weights renders only NaN (black) frames: the run that saved it "
            "diverged or the file is corrupt; use an earlier checkpoint (load_checkpoint(..., "
            "check_finite=False) reads it anyway)."
        )


def load_weights_strict(module: torch.nn.Module, weights: Mapping[str, torch.Tensor]) -> None:
    """Load ``weights`` into ``module``, refusing any mismatch.

    Raises:
        CheckpointError: naming the missing, unexpected and wrongly shaped keys.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong_shape = [
        f"{name}: checkpoint {tuple(weights[name].shape)} vs model {tuple(expected[name].shape)}"
        for name in sorted(set(expected) & set(weights))
        if weights[name].shape != expected[name].shape
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
        if wrong_shape:
            parts.append(f"wrongly shaped keys ({len(wrong_shape)}): {_preview(wrong_shape)}")
        raise CheckpointError(
            f"checkpoint does not fit {type(module).__name__}: " + "; ".join(parts)
        )
    module.load_state_dict(dict(weights), strict=True)


def checkpoint_search_dirs() -> list[Path]:
    """Folders searched for a checkpoint given by name, in order.

    ``$LCVG_CHECKPOINT_DIR`` (when set), the user cache ``~/.cache/lcvg`` (``$XDG_CACHE_HOME``
    respected), then the package's bundled ``lcvg_env/assets``.
    """
    dirs = []
    if os.environ.get(CHECKPOINT_DIR_ENV):
        dirs.append(Path(os.environ[CHECKPOINT_DIR_ENV]).expanduser())
    cache_root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    dirs.append(cache_root / "lcvg")
    dirs.append(Path(__file__).resolve().parent / "assets")
    return dirs


def find_checkpoint(name_or_path: str | os.PathLike[str]) -> Path:
    """Resolve a checkpoint given as a path or as a file name in the search folders.

    A name without a suffix is also tried with ``.safetensors`` (``"sprites_small"`` finds the
    bundled ``sprites_small.safetensors``), after the name as given.

    Raises:
        FileNotFoundError: naming every place that was looked at.
    """
    given = Path(name_or_path).expanduser()
    names = [given]
    if not given.suffix:
        names.append(given.with_name(given.name + CHECKPOINT_SUFFIX))
    looked = []
    for candidate in names:
        places = [candidate]
        if not candidate.is_absolute():
            places += [folder / candidate for folder in checkpoint_search_dirs()]
        for path in places:
            if path.is_file():
                return path
            looked.append(str(path))
    raise FileNotFoundError(
        f"checkpoint {str(name_or_path)!r} not found; looked at: " + ", ".join(looked)
    )


def _storable(tensor: torch.Tensor) -> torch.Tensor:
    # safetensors refuses views sharing storage and non-contiguous tensors; a clone is both.
    return tensor.detach().to("cpu").contiguous().clone()


def _flatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors/arrays in a nested structure by references into ``tensors``."""
    if isinstance(value, torch.Tensor):
        key = f"{_STATE_PREFIX}{len(tensors)}"
        tensors[key] = _storable(value)
        return {_REF: key}
    if isinstance(value, np.ndarray):
        key = f"{_STATE_PREFIX}{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value)).clone()
        return {_NDARRAY: key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise TypeError(f"training_state keys must be str or int, got {key!r}")
            # JSON object keys are strings; int keys (optimiser state) are tagged to round-trip.
            out[key if isinstance(key, str) else f"__int__{key}"] = _flatten(item, tensors)
        return out
    if isinstance(value, tuple):
        return {_TUPLE: [_flatten(item, tensors) for item in value]}
    if isinstance(value, list):
        return [_flatten(item, tensors) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's training_state")


def _unflatten(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {_REF}:
            return tensors[value[_REF]]
        if set(value) == {_NDARRAY}:
            return tensors[value[_NDARRAY]].cpu().numpy()
        if set(value) == {_TUPLE}:
            return tuple(_unflatten(item, tensors) for item in value[_TUPLE])
        return {
            (int(key[7:]) if key.startswith("__int__") else key): _unflatten(item, tensors)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_unflatten(item, tensors) for item in value]
    return value


def _preview(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
