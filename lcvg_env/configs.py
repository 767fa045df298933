"""Frozen config dataclasses: field docs, ``Literal`` choices, and command lines built from them.

Every command line of the project (``lcvg-train``, ``lcvg-eval``, ``lcvg-data``,
``lcvg-convert-official``, ``python -m lcvg_env.play``, ``python -m agents.demo``...) is generated
from a frozen dataclass whose fields are documented by the string literal written under each:

* :func:`add_config_arguments` adds one flag per field, spelled with dashes (``--batch-size``;
  nested dataclasses as ``--model.embed-dim``), its help the field's doc, its parsing read from
  the annotation (int, float, str, bool, tuples, ``X | None``, ``Literal[...]``);
* :func:`config_from_args` returns the config built from the defaults (or a preset instance)
  with the flags given on the command line applied;
* :func:`check_choices`, called in ``__post_init__``, rejects a value outside a ``Literal``
  field's choices with an error naming the field, the value and the choices.

Flag values: bools ``--flip`` (true) or ``--flip false``; tuples ``--resolution 64 64`` or
``--resolution 64,64`` (``""`` for an empty tuple); ``none`` for None where the annotation
allows it. A field's ``metadata={"parse": fn}`` replaces the parser read from the annotation
(``fn(text) -> value``, raising ``ValueError`` or ``argparse.ArgumentTypeError``; for
:func:`config_to_argv` to round-trip it must also read the value as that writes it, tuples
comma-separated).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import json
import re
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, Literal, Union

__all__ = [
    "add_config_arguments",
    "apply_overrides",
    "check_choices",
    "check_ints",
    "config_from_args",
    "config_json",
    "config_overrides",
    "config_to_argv",
    "config_to_dict",
    "describe_fields",
    "field_docs",
    "field_types",
    "flag_name",
    "literal_choices",
    "parse_args",
    "parse_bool",
    "parse_config",
]

_DEST = "cfg:"
"""Prefix of the argparse destinations of config flags (``cfg:model.ch``)."""


# ----------------------------------------------------------------------------- annotations
@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Map each dataclass field of ``cls`` (inherited ones too) to the string literal under it."""
    if not is_dataclass(cls):
        raise TypeError(f"field_docs expects a dataclass type, got {cls!r}")
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's doc of a field wins
        if klass is object or not is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        tree = ast.parse(source)
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Map each field of the dataclass ``cls`` to its evaluated annotation.

    Raises:
        TypeError: ``cls`` is not a dataclass, or an annotation names something its module does
            not define at run time.
    """
    if not is_dataclass(cls):
        raise TypeError(f"field_types expects a dataclass type, got {cls!r}")
    try:
        hints = typing.get_type_hints(cls)
    except NameError as err:
        raise TypeError(f"cannot evaluate the annotations of {cls.__qualname__}: {err}") from err
    return {f.name: hints[f.name] for f in fields(cls)}


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """Return (the annotation without None, whether None was allowed)."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        # several types left (``int | str``): no flag parses them; _flag_spec says so
        return (args[0] if len(args) == 1 else annotation), optional
    return annotation, False


def literal_choices(annotation: Any) -> tuple[Any, ...] | None:
    """Return the choices of a ``Literal[...]`` annotation (``X | None`` unwrapped), else None."""
    inner, _ = _unwrap_optional(annotation)
    if typing.get_origin(inner) is Literal:
        return typing.get_args(inner)
    return None


def _each_choices(annotation: Any) -> tuple[Any, ...] | None:
    """Return the choices of a ``tuple[Literal[...], ...]`` annotation (unwrapped), else None."""
    inner, _ = _unwrap_optional(annotation)
    args = typing.get_args(inner)
    if typing.get_origin(inner) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return literal_choices(args[0])
    return None


@functools.cache
def _choice_fields(cls: type) -> tuple[tuple[str, tuple[Any, ...], bool, bool], ...]:
    """(name, choices, None allowed, a tuple of them) of each field with choices."""
    out = []
    for name, annotation in field_types(cls).items():
        optional = _unwrap_optional(annotation)[1]
        choices = literal_choices(annotation)
        if choices is not None:
            out.append((name, choices, optional, False))
        elif (each := _each_choices(annotation)) is not None:
            out.append((name, each, optional, True))
    return tuple(out)


def check_choices(config: Any) -> None:
    """Check every ``Literal``-annotated field of the dataclass instance ``config``.

    Call it from ``__post_init__``; the choices are read from the annotations (``X | None``
    also accepts None). A ``tuple[Literal[...], ...]`` field holds one or more of them.

    Raises:
        ValueError: naming the field, the value received and the choices.
    """
    cls: type = type(config)
    for name, choices, optional, each in _choice_fields(cls):
        value = getattr(config, name)
        if value is None and optional:
            continue
        if each:
            if not isinstance(value, tuple) or not value or any(
                    item not in choices for item in value):
                raise ValueError(f"{cls.__name__}.{name} must be one or more of {choices!r}, "
                                 f"got {value!r}")
            continue
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            either = " or None" if optional else ""
            raise ValueError(f"{cls.__name__}.{name} must be one of {choices!r}{either}, "
                             f"got {value!r}")


def check_ints(config: Any, minimums: Mapping[str, int]) -> None:
    """Check that each named field of the dataclass instance ``config`` is an int >= its minimum.

    Bools are refused; None passes where the field's annotation allows it (``int | None``).
    Call it from ``__post_init__``.

    Raises:
        ValueError: naming the field, the minimum and the value received.
    """
    cls: type = type(config)
    types_ = field_types(cls)
    for name, low in minimums.items():
        value = getattr(config, name)
        if value is None and _unwrap_optional(types_[name])[1]:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            either = " or None" if _unwrap_optional(types_[name])[1] else ""
            raise ValueError(f"{cls.__name__}.{name} must be an int >= {low}{either}, "
                             f"got {value!r}")


# ------------------------------------------------------------------------------ parsing text
def parse_bool(text: str) -> bool:
    """Parse "true/false", "yes/no", "on/off", "1/0" (any case)."""
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


def _named(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    def named(text: str) -> Any:
        return parse(text)

    named.__name__ = name  # argparse says "invalid <name> value: ..."
    return named


def _allow_none(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_or_none(text: str) -> Any:
        return None if text.strip().lower() == "none" else parse(text)

    return _named(parse_or_none, f"{getattr(parse, '__name__', 'value')} or none")


def _tuple_parser(annotation: Any, where: str) -> Callable[[str], tuple]:
    """Parser of "1,2", "1 2" or "1x2" (numbers only) into the tuple type ``annotation``.

    Items of a ``Literal`` type are read as their choices' type (``check_choices`` checks them).
    """
    args = typing.get_args(annotation)
    variable = len(args) == 2 and args[1] is Ellipsis
    kinds = [args[0]] if variable else list(args)
    kinds = [type(choices[0]) if (choices := literal_choices(k)) else k for k in kinds]
    if not kinds or any(k not in (int, float, str) for k in kinds):
        raise TypeError(f"{where}: no command-line parser for {annotation!r}")
    numeric = str not in kinds
    example = "64,64" if numeric else "a,b"

    def parse_tuple(text: str) -> tuple:
        separators = r"[,\sx]+" if numeric else r"[,\s]+"
        parts = [p for p in re.split(separators, text.strip()) if p]
        if not variable and len(parts) != len(kinds):
            raise argparse.ArgumentTypeError(
                f"expected {len(kinds)} values like {example}, got {text!r}")
        per_part = [kinds[0]] * len(parts) if variable else kinds
        try:
            return tuple(kind(part) for kind, part in zip(per_part, parts))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected values like {example}, got {text!r}") from None

    return parse_tuple


class _JoinedTuple(argparse.Action):
    """Joins the flag's words ("64 64" or "64,64") and parses them with ``parse_tuple``."""

    def __init__(self, option_strings: Sequence[str], dest: str,
                 parse_tuple: Callable[[str], Any], **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.parse_tuple = parse_tuple

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        try:
            value = self.parse_tuple(",".join(values))
        except (ValueError, argparse.ArgumentTypeError) as err:
            raise argparse.ArgumentError(self, str(err)) from None
        setattr(namespace, self.dest, value)


class _BoolFlag(argparse._StoreAction):
    """A bool field's flag: alone it means true, or it takes a value (see :func:`parse_args`)."""


_BOOL_WORDS = frozenset({"1", "0", "true", "false", "yes", "no", "on", "off", "none"})


def _bool_flags(parser: argparse.ArgumentParser) -> set[str]:
    """Option strings of the bool flags of ``parser`` and of its subcommands."""
    flags: set[str] = set()
    for action in parser._actions:
        if isinstance(action, _BoolFlag):
            flags.update(action.option_strings)
        elif isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= _bool_flags(sub)
    return flags


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
               ) -> argparse.Namespace:
    """Return ``parser.parse_args(argv)``, a bool flag followed by no boolean word meaning true.

    argparse would take the next word as the flag's value, so ``--trust-pickle CKPT OUT``
    would read CKPT as a bool; such a flag is passed as ``--trust-pickle=true`` instead.
    """
    words = list(sys.argv[1:] if argv is None else argv)
    flags = _bool_flags(parser)
    out = []
    for i, word in enumerate(words):
        if word == "--":
            out += words[i:]
            break
        following = words[i + 1].strip().lower() if i + 1 < len(words) else None
        out.append(f"{word}=true" if word in flags and following not in _BOOL_WORDS else word)
    return parser.parse_args(out)


def _flag_spec(f: dataclasses.Field, annotation: Any, where: str) -> dict[str, Any]:
    """Return the ``add_argument`` keywords (type, nargs, choices...) of one field's flag."""
    inner, optional = _unwrap_optional(annotation)
    custom = f.metadata.get("parse")
    if custom is not None:
        return {"type": _allow_none(custom) if optional else custom,
                "metavar": f.name.upper()}
    choices = literal_choices(annotation)
    if choices is not None:
        parse = type(choices[0])
        shown = [str(c) for c in choices] + (["none"] if optional else [])
        return {"type": _allow_none(parse) if optional else parse,
                "choices": choices + ((None,) if optional else ()),
                "metavar": "{" + ",".join(shown) + "}"}
    if inner is bool:
        return {"type": _allow_none(parse_bool) if optional else _named(parse_bool, "bool"),
                "action": _BoolFlag, "nargs": "?", "const": True, "metavar": "BOOL"}
    if inner in (int, float, str):
        return {"type": _allow_none(inner) if optional else inner,
                "metavar": inner.__name__.upper()}
    if typing.get_origin(inner) is tuple:
        parse_tuple = _tuple_parser(inner, where)
        each = _each_choices(inner)
        metavar = ("{" + ",".join(map(str, each)) + "}" if each
                   else "S" if str in typing.get_args(inner) else "N")
        return {"action": _JoinedTuple, "nargs": "+", "metavar": metavar,
                "parse_tuple": _allow_none(parse_tuple) if optional else parse_tuple}
    raise TypeError(f"{where}: no command-line parser for the annotation {annotation!r}")


# ----------------------------------------------------------------------------- command line
def flag_name(dotted: str) -> str:
    """Return the flag of a dotted field name: ``model.embed_dim`` -> ``--model.embed-dim``."""
    return "--" + dotted.replace("_", "-")


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def _help_value(value: Any) -> str:
    return '""' if value in ("", ()) else _shown(value)


def _plain(doc: str) -> str:
    """Drop reST markup from a field doc for ``--help`` (":data:`X`" -> "X", "``x``" -> "x")."""
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", doc).replace("``", "")


def add_config_arguments(parser: argparse.ArgumentParser, config: Any, prefix: str = "",
                         exclude: Sequence[str] = (), shown_as: str = "default",
                         title: str | None = None, underscore_aliases: bool = False,
                         aliases: Mapping[str, Sequence[str]] | None = None) -> None:
    """Add one ``--<prefix><field>`` flag per field of ``config`` (a dataclass or an instance).

    Flags are spelled with dashes; nested dataclasses get dotted names (``--model.ch-mult``).
    Defaults stay unset, so that only the flags given override ``config``
    (see :func:`config_from_args`); the help text ends with "(<shown_as>: value)" from
    ``config`` (an instance: its values, e.g. ``shown_as="small preset"``; a class: its
    defaults), or "(required)" for a field without a default, whose flag is then required.

    Args:
        parser: the parser (or a subcommand's) to add the flags to.
        config: a dataclass type or instance; nested dataclass fields are recursed into.
        prefix: dotted prefix of the flags (``"model."`` for the nested ones).
        exclude: dotted field names to leave off (``"preset"``, ``"model.ch"``).
        shown_as: how the help names where the shown values come from.
        title: title of the help group (default: "<name> config fields").
        underscore_aliases: also accept ``--batch_size`` (hidden from ``--help``) for every
            flag whose field name has an underscore, so that older command lines keep working.
        aliases: dotted field name -> older flags that also set it (hidden from ``--help``).
    """
    cls = config if isinstance(config, type) else type(config)
    docs, types_ = field_docs(cls), field_types(cls)
    group = parser.add_argument_group(
        title or (f"{prefix[:-1]} config fields" if prefix else f"{cls.__name__} fields"))
    for f in fields(cls):
        dotted = f"{prefix}{f.name}"
        if not f.init or dotted in exclude:
            continue
        value = _default_of(f) if isinstance(config, type) else getattr(config, f.name)
        if is_dataclass(value) and not isinstance(value, type):
            add_config_arguments(parser, value, prefix=f"{dotted}.", exclude=exclude,
                                 shown_as=shown_as, underscore_aliases=underscore_aliases,
                                 aliases=aliases)
            continue
        spec = _flag_spec(f, types_[f.name], f"{cls.__name__}.{f.name}")
        required = value is MISSING
        note = "required" if required else f"{shown_as}: {_help_value(value)}"
        help_text = f"{_plain(docs.get(f.name, ''))} ({note})".strip().replace("%", "%%")
        group.add_argument(flag_name(dotted), dest=f"{_DEST}{dotted}", default=argparse.SUPPRESS,
                           required=required, help=help_text, **spec)
        hidden = list((aliases or {}).get(dotted, ()))
        if underscore_aliases and "_" in dotted:
            hidden.append(f"--{dotted}")
        if hidden:
            parser.add_argument(*hidden, dest=f"{_DEST}{dotted}", default=argparse.SUPPRESS,
                                help=argparse.SUPPRESS, **spec)


def config_overrides(namespace: argparse.Namespace) -> dict[str, Any]:
    """Dotted field names -> values of the config flags given on the command line."""
    return {key[len(_DEST):]: value for key, value in vars(namespace).items()
            if key.startswith(_DEST)}


def _split(cls: type, overrides: Mapping[str, Any]
           ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split dotted ``overrides`` into top-level values and per-nested-field overrides."""
    names = {f.name for f in fields(cls)}
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise ValueError(f"unknown config field {key!r} for {cls.__name__}; known: "
                             f"{sorted(names)}")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            top[head] = value
    return top, nested


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """Return the instance ``config`` with dotted-name ``overrides`` applied (``{"model.ch": 32}``).

    Raises:
        ValueError: an unknown field (named), or a value the config's validation refuses.
    """
    top, nested = _split(type(config), overrides)
    for head, sub in nested.items():
        top[head] = apply_overrides(getattr(config, head), sub)
    if not top:
        return config
    return dataclasses.replace(config, **top)


def _construct(cls: type, overrides: Mapping[str, Any]) -> Any:
    top, nested = _split(cls, overrides)
    for head, sub in nested.items():
        f = next(f for f in fields(cls) if f.name == head)
        top[head] = apply_overrides(_default_of(f), sub)
    return cls(**top)


def config_from_args(config: Any, namespace: argparse.Namespace,
                     parser: argparse.ArgumentParser | None = None) -> Any:
    """Return ``config`` (an instance, or a dataclass built from its defaults) with the flags.

    With ``parser``, a value the config refuses (its ``__post_init__`` raising ValueError or
    TypeError) exits through ``parser.error`` with the config's message (status 2).
    """
    overrides = config_overrides(namespace)
    try:
        if isinstance(config, type):
            return _construct(config, overrides)
        return apply_overrides(config, overrides)
    except (ValueError, TypeError) as err:
        if parser is None:
            raise
        parser.error(str(err))


def parse_config(parser: argparse.ArgumentParser, config: Any,
                 argv: Sequence[str] | None = None, print_config: bool = True,
                 **flags: Any) -> tuple[Any, argparse.Namespace]:
    """Add ``config``'s flags to ``parser``, parse ``argv`` and return (config, namespace).

    The common path of a command line built from one config: :func:`add_config_arguments`
    (``flags`` are its keyword arguments), :func:`parse_args`, :func:`config_from_args` (a value
    the config refuses exits through ``parser.error``). With ``print_config``, the parser also
    takes ``--print-config``; given, the config is printed as JSON and None is returned in its
    place, for the caller to exit with status 0.
    """
    if print_config:
        parser.add_argument("--print-config", action="store_true",
                            help="print the resolved config as JSON and exit")
    add_config_arguments(parser, config, **flags)
    namespace = parse_args(parser, argv)
    built = config_from_args(config, namespace, parser)
    if print_config and namespace.print_config:
        print(config_json(built))
        return None, namespace
    return built, namespace


def config_to_argv(config: Any, prefix: str = "", exclude: Sequence[str] = ()) -> list[str]:
    """Return the flags that rebuild the instance ``config`` (inverse of :func:`config_from_args`).

    Tuples are written as one comma-separated word (``""`` when empty), None as ``none``.
    """
    argv: list[str] = []
    for f in fields(config):
        dotted = f"{prefix}{f.name}"
        if not f.init or dotted in exclude:
            continue
        value = getattr(config, f.name)
        if is_dataclass(value) and not isinstance(value, type):
            argv += config_to_argv(value, prefix=f"{dotted}.", exclude=exclude)
        elif value is None:
            argv += [flag_name(dotted), "none"]
        elif isinstance(value, bool):
            argv += [flag_name(dotted), "true" if value else "false"]
        else:
            argv += [flag_name(dotted), _shown(value)]
    return argv


def config_to_dict(config: Any) -> dict[str, Any]:
    """JSON-safe dict of a dataclass instance (nested ones as dicts, tuples as lists)."""
    def plain(value: Any) -> Any:
        if is_dataclass(value) and not isinstance(value, type):
            return config_to_dict(value)
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return {f.name: plain(getattr(config, f.name)) for f in fields(config)}


def config_json(config: Any) -> str:
    """Indented JSON of :func:`config_to_dict` (what ``--print-config`` prints)."""
    return json.dumps(config_to_dict(config), indent=2, sort_keys=True)


def describe_fields(config: Any, prefix: str = "") -> Sequence[tuple[str, Any, str]]:
    """List (dotted name, value, doc) for every field, for documentation and tests."""
    rows: list[tuple[str, Any, str]] = []
    cls: type = type(config)
    docs = field_docs(cls)
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value) and not isinstance(value, type):
            rows.extend(describe_fields(value, prefix=f"{prefix}{f.name}."))
        else:
            rows.append((f"{prefix}{f.name}", value, docs.get(f.name, "")))
    return rows
