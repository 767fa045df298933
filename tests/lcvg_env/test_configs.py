"""lcvg_env.configs: command lines built from frozen config dataclasses, and Literal checks."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Literal

import pytest

from lcvg_env.configs import (
    add_config_arguments,
    apply_overrides,
    check_choices,
    config_from_args,
    config_json,
    config_to_argv,
    describe_fields,
    field_docs,
    flag_name,
    parse_args,
)
from lcvg_env.models import ModelConfig


def _pair(text: str) -> tuple[int, int]:
    lo, _, hi = text.replace(",", "-").partition("-")
    return int(lo), int(hi or lo)


@dataclass(frozen=True)
class Inner:
    """A nested config."""

    embed_dim: int = 8
    """Width of the codes."""
    mode: Literal["fast", "exact"] = "fast"
    """How to run."""

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass(frozen=True)
class Demo:
    """Every kind of field the command line handles."""

    out: str
    """Where to write (required)."""
    batch_size: int = 4
    """Samples per step."""
    learning_rate: float = 1e-3
    """Step size (100% of the default)."""
    flip: bool = False
    """Random flips."""
    resolution: tuple[int, int] = (64, 64)
    """Frame size (H, W)."""
    levels: tuple[int, ...] = (1, 2)
    """Any number of levels."""
    names: tuple[str, ...] = ("a",)
    """Some names."""
    limit: int | None = None
    """At most this many (None: all)."""
    tracking: Literal["segment", "carry"] | None = None
    """Optional choice."""
    style: Literal["classic", "varied"] = "classic"
    """Required choice."""
    modes: tuple[Literal["fast", "exact"], ...] = ("fast",)
    """One or more choices."""
    objects: tuple[int, int] = field(default=(1, 3), metadata={"parse": _pair})
    """A range with its own parser ("2" or "1-3")."""
    inner: Inner = field(default_factory=Inner)
    """The nested config."""

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass(frozen=True)
class Child(Demo):
    """A subclass: inherited fields keep their docs."""

    extra: int = 0
    """A field of the subclass."""


def _parser(config=Demo, **kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="demo")
    add_config_arguments(parser, config, **kwargs)
    return parser


def _parse(argv: list[str], config=Demo, **kwargs):
    parser = _parser(config, **kwargs)
    return config_from_args(config, parse_args(parser, argv), parser)


def test_flags_are_dashed_typed_and_documented(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--out", "--batch-size", "--learning-rate", "--inner.embed-dim", "--inner.mode"):
        assert flag in text, flag
    assert "--batch_size" not in text
    assert "Samples per step. (default: 4)" in text
    assert "Step size (100% of the default)." in text  # "%" survives argparse's formatting
    assert "Where to write (required). (required)" in text
    assert "{segment,carry,none}" in text and "{fast,exact}" in text
    assert flag_name("model.embed_dim") == "--model.embed-dim"


def test_values_parse_from_the_annotations():
    config = _parse(["--out", "x", "--batch-size", "8", "--learning-rate", "0.5", "--flip",
                     "--resolution", "32", "48", "--levels", "", "--names", "b,c",
                     "--limit", "3", "--tracking", "carry", "--style", "varied",
                     "--objects", "2", "--inner.embed-dim", "16", "--inner.mode", "exact"])
    assert config == Demo(out="x", batch_size=8, learning_rate=0.5, flip=True,
                          resolution=(32, 48), levels=(), names=("b", "c"), limit=3,
                          tracking="carry", style="varied", objects=(2, 2),
                          inner=Inner(embed_dim=16, mode="exact"))
    assert _parse(["--out", "x", "--flip", "false", "--resolution", "32x48", "--limit",
                   "none"]) == Demo(out="x", resolution=(32, 48))
    assert _parse(["--out", "x"]) == Demo(out="x")


@pytest.mark.parametrize("config", [
    Demo(out="x"),
    Demo(out="y z", batch_size=1, learning_rate=2.5e-7, flip=True, resolution=(8, 16),
         levels=(), names=("p", "q"), limit=0, tracking="segment", style="varied",
         objects=(2, 5), inner=Inner(embed_dim=3, mode="exact")),
])
def test_a_config_round_trips_through_its_flags(config):
    assert _parse(config_to_argv(config)) == config
    assert json.loads(config_json(config))["inner"] == {"embed_dim": config.inner.embed_dim,
                                                        "mode": config.inner.mode}


def test_project_model_configs_round_trip():
    @dataclass(frozen=True)
    class Wrapper:
        model: ModelConfig = field(default_factory=ModelConfig)
        """The model."""

    for model in (ModelConfig.paper_tennis(), ModelConfig.official_bair(),
                  ModelConfig().replace(attn_resolutions=(), prediction="composite")):
        assert _parse(config_to_argv(Wrapper(model)), Wrapper) == Wrapper(model)


def test_a_wrong_choice_lists_the_choices(capsys):
    with pytest.raises(SystemExit) as info:
        _parse(["--out", "x", "--style", "fancy"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--style" in err and "'fancy'" in err and "'classic', 'varied'" in err
    with pytest.raises(SystemExit):
        _parse(["--out", "x", "--inner.mode", "slow"])
    assert "'fast', 'exact'" in capsys.readouterr().err
    # in code: the shared check names the field, the value received and the choices
    with pytest.raises(ValueError, match=r"Demo.style must be one of \('classic', 'varied'\), "
                                         r"got 'fancy'"):
        Demo(out="x", style="fancy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Demo.tracking must be one of .* or None, got 'x'"):
        Demo(out="x", tracking="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ModelConfig.prediction must be one of "
                                         r"\('frame', 'composite'\), got 'z'"):
        ModelConfig(prediction="z")  # type: ignore[arg-type]
    from lcvg_env.world.scene import SceneConfig

    with pytest.raises(ValueError, match=r"SceneConfig.style must be one of"):
        SceneConfig(style="fancy")  # type: ignore[arg-type]


def test_a_tuple_of_choices_takes_one_or_more_of_them(capsys):
    assert _parse(["--out", "x", "--modes", "exact", "fast"]).modes == ("exact", "fast")
    assert _parse(["--out", "x", "--modes", "exact,fast"]).modes == ("exact", "fast")
    assert "{fast,exact}" in _parser().format_help()
    with pytest.raises(SystemExit):
        _parse(["--out", "x", "--modes", "fast", "slow"])
    assert ("Demo.modes must be one or more of ('fast', 'exact'), got ('fast', 'slow')"
            in capsys.readouterr().err)
    with pytest.raises(ValueError, match=r"Demo.modes must be one or more of .*, got \(\)"):
        Demo(out="x", modes=())
    with pytest.raises(ValueError, match=r"Demo.modes must be one or more of .*, got 'fast'"):
        Demo(out="x", modes="fast")  # type: ignore[arg-type]


def test_bad_values_are_parser_errors(capsys):
    for argv, words in ((["--batch-size", "x"], ("--batch-size", "'x'")),
                        (["--resolution", "1", "2", "3"], ("--resolution", "2 values")),
                        (["--flip=maybe"], ("--flip", "'maybe'")),
                        (["--flip", "maybe"], ("maybe",))):
        with pytest.raises(SystemExit):
            _parse(["--out", "x", *argv])
        err = capsys.readouterr().err
        assert all(w in err for w in words), (argv, err)
    with pytest.raises(SystemExit):
        _parse([])  # --out is required
    assert "--out" in capsys.readouterr().err
    # a value the config's own validation refuses is a parser error too, with its message
    with pytest.raises(SystemExit):
        _parse(["--model.resolution", "30,30"], _model_wrapper())
    assert "divisible" in capsys.readouterr().err


def _model_wrapper() -> type:
    @dataclass(frozen=True)
    class WithModel:
        model: ModelConfig = field(default_factory=ModelConfig)
        """The model."""

    return WithModel


def test_a_bool_flag_alone_before_a_positional_means_true():
    parser = argparse.ArgumentParser()
    parser.add_argument("src")
    add_config_arguments(parser, Demo)
    args = parse_args(parser, ["--flip", "SRC", "--out", "o"])
    assert args.src == "SRC" and config_from_args(Demo, args).flip is True
    args = parse_args(parser, ["--flip", "no", "--out", "o", "--", "--flip"])
    assert config_from_args(Demo, args).flip is False and args.src == "--flip"


def test_presets_show_their_values_and_only_given_flags_override():
    base = Demo(out="base", batch_size=32, inner=Inner(embed_dim=64))
    parser = _parser(base, shown_as="big preset", exclude=("out",))
    assert "(big preset: 32)" in " ".join(parser.format_help().split())
    assert "--out" not in parser.format_help()
    config = config_from_args(base, parser.parse_args(["--inner.mode", "exact"]))
    assert config == Demo(out="base", batch_size=32, inner=Inner(embed_dim=64, mode="exact"))


def test_underscore_aliases_are_hidden_and_optional(capsys):
    parser = _parser(underscore_aliases=True)
    assert "--batch_size" not in parser.format_help()
    config = config_from_args(Demo, parser.parse_args(["--out", "x", "--batch_size", "2",
                                                       "--inner.embed_dim", "5"]))
    assert (config.batch_size, config.inner.embed_dim) == (2, 5)
    with pytest.raises(SystemExit):
        _parser().parse_args(["--out", "x", "--batch_size", "2"])
    capsys.readouterr()
    parser = _parser(aliases={"batch_size": ["--bs"], "inner.mode": ["--mode"]})
    assert "--bs" not in parser.format_help()
    config = config_from_args(Demo, parser.parse_args(["--out", "x", "--bs", "2", "--mode",
                                                       "exact"]))
    assert (config.batch_size, config.inner.mode) == (2, "exact")


def test_docs_overrides_and_descriptions():
    docs = field_docs(Child)
    assert docs["extra"] == "A field of the subclass." and docs["batch_size"] == "Samples per step."
    assert "--batch-size" in _parser(Child).format_help()
    with pytest.raises(ValueError, match="bogus"):
        apply_overrides(Demo(out="x"), {"bogus": 1})
    with pytest.raises(ValueError, match="'bogus' for Inner"):
        apply_overrides(Demo(out="x"), {"inner.bogus": 1})
    rows = dict((name, doc) for name, _, doc in describe_fields(Demo(out="x")))
    assert rows["inner.mode"] == "How to run."
    with pytest.raises(TypeError, match="dataclass"):
        field_docs(int)


@pytest.mark.parametrize("module", ["lcvg_env.official", "lcvg_env.world.benchmark"])
def test_lcvg_env_command_lines_have_help(module, capsys):
    import importlib

    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--" in capsys.readouterr().out


def test_official_flags(tmp_path, capsys):
    from lcvg_env.official import ConvertOfficialConfig, main

    with pytest.raises(SystemExit):
        main(["a.ckpt", "b.safetensors", "--resolution", "96"])
    assert "--resolution" in capsys.readouterr().err
    # the flag before the positionals still leaves them alone
    assert main(["--trust-pickle", str(tmp_path / "none.ckpt"), str(tmp_path / "o")]) == 2
    assert "none.ckpt" in capsys.readouterr().err
    assert ConvertOfficialConfig().resolution == (256, 256)


def test_train_config_round_trips_through_lcvg_train(capsys):
    from training import cli
    from training.config import TrainConfig, preset

    config = preset("paper_tennis")
    argv = config_to_argv(config, exclude=("preset",))
    assert cli.train_main(["--preset", "small", "--print-config", *argv]) == 0
    printed = TrainConfig.from_dict(json.loads(capsys.readouterr().out))
    assert printed == TrainConfig(**{**config.__dict__, "preset": "small"})
    # the underscore spelling of older run commands still works
    assert cli.train_main(["--print-config", "--batch_size", "3", "--model.embed_dim", "16"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["batch_size"] == 3 and printed["model"]["embed_dim"] == 16
    with pytest.raises(SystemExit):
        cli.train_main(["--print-config", "--amp", "fp8"])
    assert "'auto', 'bf16', 'none'" in capsys.readouterr().err
