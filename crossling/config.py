"""YAML run configs loaded into dataclasses, with ``--field value`` overrides.

The shared contract (DESIGN.md): one YAML per run under ``configs/<area>/``, whose first line is the
command that runs it; the YAML fills a dataclass whose fields each carry ``metadata={"help": ...}``;
``crossling <area> <verb> CONFIG --field value`` overrides fields. Values given on the command line
are parsed as YAML scalars/flow collections, so ``--max_steps 10``, ``--languages [de,fr]`` and
``--packing false`` all do what they say.

This module knows nothing about any area; each area declares its config dataclasses.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from crossling.errors import ConfigError

T = TypeVar("T")


def config_help(cls: type) -> str:
    """One line per field: name, type, default and help — what ``--help`` prints for a config."""
    lines = [f"{cls.__name__} fields (set in the YAML or override with --field value):"]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = _default_of(f)
        shown = "required" if default is dataclasses.MISSING else f"default {default!r}"
        lines.append(f"  --{f.name} ({_type_name(hints[f.name])}, {shown})")
        lines.append(f"      {f.metadata.get('help', '')}")
    return "\n".join(lines)


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build ``cls`` from a YAML file (optional) and ``--field value`` overrides.

    Unknown fields and values of the wrong type are errors that name the file and field: a typo in a
    config must never be silently ignored.
    """
    values: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of field: value, got {type(loaded).__name__}")
        values.update(loaded)
    values.update(parse_overrides(overrides or []))
    return from_dict(cls, values, source=source)


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``["--a", "1", "--b=x", "--flag"]`` → ``{"a": 1, "b": "x", "flag": True}``."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"expected --field value, got {arg!r}")
        key, eq, raw = arg[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                raw = args[i + 1]
                i += 1
            else:
                raw = "true"
        out[key] = yaml.safe_load(raw) if raw != "" else ""
        i += 1
    return out


def from_dict(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown field(s) {', '.join(unknown)} for {cls.__name__}; "
            f"known: {', '.join(sorted(names))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{source}: field {k!r}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # missing required fields
        raise ConfigError(f"{source}: {e}") from e
    except ValueError as e:  # __post_init__ checks
        raise ConfigError(f"{source}: {e}") from e


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | Path, command: str | None = None) -> None:
    """Write the resolved config as YAML (first line: the command that reproduces it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = f"# {command}\n" if command else ""
    path.write_text(head + yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True))


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Attach CONFIG + overrides to an argparse sub-command, with the fields listed in --help."""
    parser.add_argument("config", nargs="?", help="YAML config file (see configs/)")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = config_help(cls)


# --- type coercion -----------------------------------------------------------------------------


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} is not {_type_name(tp)}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, where) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, source=where)
    return value


def parse_verb_config(
    prog: str, description: str, configs: dict[str, type], help_: dict[str, str], argv: list[str]
) -> tuple[str, str | None, Any]:
    """``<verb> [CONFIG] [--field value ...]`` → (verb, config path, loaded config).

    CONFIG is optional, so ``train --model x`` must not take ``x`` for the config: the arguments are
    split by hand, and argparse only prints usage and ``--help`` (with every field listed).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb, cls in configs.items():
        add_config_arguments(sub.add_parser(verb, help=help_[verb], description=help_[verb]), cls)
    if not argv or argv[0] not in configs or any(a in ("-h", "--help") for a in argv):
        parser.parse_args(argv)  # prints usage / help and exits
    verb, rest = argv[0], argv[1:]
    path = rest[0] if rest and not rest[0].startswith("--") else None
    return verb, path, load_config(configs[verb], path, rest[1:] if path else rest)
