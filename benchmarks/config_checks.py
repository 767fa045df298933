"""Checks the benchmarks' configs share beyond ``lcvg_env.configs`` (tuples, device names),
the command line every benchmark builds from its config (:func:`parse_benchmark`) and the main
of those that score twin scenes style by style (:func:`print_per_style`).

``check_choices`` and ``check_ints`` there check ``Literal`` fields (tuples of them too:
``--styles varied classic``) and int fields; these check the fields they cannot: tuples of
ints (``--sizes 1 64``) and torch device names. Call them from ``__post_init__``; each raises
``ValueError`` naming the field and the value received. :func:`resolved_device` checks, at run
time, that the device named is there.
"""

from __future__ import annotations

import argparse
import json
import typing
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import torch

from lcvg_env.configs import field_types, parse_config
from lcvg_env.device import resolve_device

Config = TypeVar("Config")


class _Styled(Protocol):
    @property
    def styles(self) -> Sequence[str]: ...


Styled = TypeVar("Styled", bound=_Styled)


def parse_benchmark(config: type[Config], prog: str, doc: str | None,
                    argv: Sequence[str] | None) -> tuple[Config | None, argparse.ArgumentParser]:
    """A benchmark's command line: ``config``'s flags and ``--print-config``
    (``lcvg_env.configs.parse_config``) on a parser named ``prog``, described by the first line
    of ``doc`` (the module's docstring).

    Returns:
        The config (None once ``--print-config`` has printed it: exit with status 0) and the
        parser, for errors found later (``parser.error``).
    """
    parser = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n")[0])
    built, _ = parse_config(parser, config, argv)
    return built, parser


def print_per_style(config: type[Styled], prog: str, doc: str | None,
                    argv: Sequence[str] | None,
                    measure: Callable[[Styled, str], dict[str, Any] | list[dict[str, Any]]]
                    ) -> None:
    """A benchmark's main over its config's ``styles``: the command line of
    :func:`parse_benchmark`, then ``measure(config, style)`` printed as JSON for each style,
    one object per line (a list: one line per item)."""
    built, _ = parse_benchmark(config, prog, doc, argv)
    if built is None:  # --print-config
        return
    for style in built.styles:
        result = measure(built, style)
        for row in result if isinstance(result, list) else [result]:
            print(json.dumps(row))


def _name(config: Any, name: str) -> str:
    return f"{type(config).__name__}.{name}"


def _allows_none(config: Any, name: str) -> bool:
    return type(None) in typing.get_args(field_types(type(config))[name])


def check_int_tuple(config: Any, name: str, low: int) -> None:
    """Check that the tuple field ``name`` holds one or more ints, each >= ``low``.

    None passes where the field's annotation allows it (``tuple[int, int] | None``).
    """
    value = getattr(config, name)
    if value is None and _allows_none(config, name):
        return
    if (not isinstance(value, tuple) or not value
            or any(isinstance(item, bool) or not isinstance(item, int) or item < low
                   for item in value)):
        raise ValueError(f"{_name(config, name)} must be one or more ints >= {low}, "
                         f"got {value!r}")


def check_device(config: Any, name: str = "device") -> None:
    """Check that the field ``name`` is "auto" or a name ``torch.device`` reads ("cuda:1").

    Whether the device is present is left to the run (``--print-config`` works anywhere); None
    passes where the field's annotation allows it.
    """
    value = getattr(config, name)
    if value is None and _allows_none(config, name):
        return
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return
        try:
            torch.device(value)
            return
        except RuntimeError:
            pass
    raise ValueError(f"{_name(config, name)} must be auto or a torch device (cpu, cuda, "
                     f"cuda:1...), got {value!r}")


def resolved_device(config: Any, parser: argparse.ArgumentParser | None = None) -> torch.device:
    """``resolve_device(config.device)`` ("auto": CUDA when available, else the CPU).

    Raises:
        ValueError: the device is not there (CUDA asked for without CUDA); with ``parser``,
            exits through ``parser.error`` with the message instead (status 2).
    """
    try:
        return resolve_device(config.device)
    except ValueError as err:
        if parser is None:
            raise
        parser.error(f"--device: {err}")
