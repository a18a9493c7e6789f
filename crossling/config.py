"""YAML run configs loaded into dataclasses, and the one command-line parser every area CLI uses.

One YAML per run under ``configs/<area>/``, whose first line is the command that runs it; the YAML
fills a dataclass whose fields each carry ``metadata={"help": ...}``;
``crossling <area> <verb> CONFIG --field value`` overrides fields, nested ones with a dot
(``--limits.max_queue 8``). Values given on the command line are parsed as YAML scalars/flow
collections, so ``--max_steps 10``, ``--languages [de,fr]`` and ``--packing false`` all do what they
say (a string field keeps the text as typed: ``--name 0123`` is ``"0123"``).

This module knows nothing about any area; each area declares its verbs (:class:`Verb`) and config
dataclasses and hands ``argv`` to :func:`parse_cli`.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import yaml

from crossling.errors import ConfigError

T = TypeVar("T")

COMMAND_LINE = "command line"
HELP_FLAGS = ("-h", "--help")


def config_help(cls: type, yaml_file: bool = True) -> str:
    """One entry per field: name, type, default and help — what ``--help`` prints for a config.
    Fields of nested config blocks are listed with their dotted name (``--limits.max_queue``)."""
    how = "set in the YAML or override with --field value" if yaml_file else "set with --field value"
    return "\n".join([f"{cls.__name__} fields ({how}):", *_field_help(cls, "")])


def _field_help(cls: type, prefix: str) -> list[str]:
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name, default, nested = prefix + f.name, _default_of(f), _nested_dataclass(hints[f.name])
        if nested is not None:
            shown = ", default None" if default is None else ""
            lines.append(f"  --{name}.FIELD ({nested.__name__} block{shown})")
        else:
            shown = "required" if default is dataclasses.MISSING else f"default {default!r}"
            lines.append(f"  --{name} ({_type_name(hints[f.name])}, {shown})")
        lines.append(f"      {f.metadata.get('help', '')}")
        if nested is not None:
            lines += _field_help(nested, name + ".")
    return lines


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build ``cls`` from a YAML file (optional) and ``--field value`` overrides.

    Unknown fields and values of the wrong type are errors that name where they come from — the file
    and field, or the command line and flag: a typo in a config must never be silently ignored.
    A dotted override (``--limits.max_queue 8``) is merged into the YAML's nested mapping, and so is a
    mapping given for a block of fields (``--limits "{max_queue: 8}"`` sets max_queue only; the
    block's other fields keep the YAML's values). Mapping-valued fields (``--adapters "{a: path}"``)
    are replaced whole.
    """
    source = COMMAND_LINE if path is None else str(path)
    values = {} if path is None else _read_yaml(Path(path))
    checked = _checked_overrides(cls, overrides or [])
    for key, value in checked.items():
        for dotted, leaf in _block_fields(cls, key, value):
            _merge(values, dotted, leaf, source)
    # a value check (__post_init__) may fail on a value from either place: name both
    checks = f"{path} + {COMMAND_LINE}" if checked and path is not None else source
    return from_dict(cls, values, source=source, checks_source=checks)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of field: value, got {type(loaded).__name__}")
    return loaded


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``["--a", "1", "--b=x", "--flag"]`` → ``{"a": 1, "b": "x", "flag": True}`` (no config to check
    the names against: :func:`load_config` does that)."""
    return {key: _parse_value(raw, Any) for key, raw in _split_overrides(args).items()}


def _split_overrides(args: list[str]) -> dict[str, str | bool]:
    """``--field value`` / ``--field=value`` / bare ``--flag`` (True) → raw text by field name."""
    out: dict[str, str | bool] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"{COMMAND_LINE}: expected --field value, got {arg!r}")
        key, eq, raw = arg[2:].partition("=")
        key = key.replace("-", "_")
        if eq:
            out[key] = raw
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            out[key] = args[i + 1]
            i += 1
        else:
            out[key] = True
        i += 1
    return out


def _parse_value(raw: str | bool, tp: Any, where: str = COMMAND_LINE) -> Any:
    if raw is True or raw == "":
        return raw
    text_field = tp is str or (_is_union(tp) and str in typing.get_args(tp))
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        if text_field:
            return raw
        raise ConfigError(f"{where}: {raw!r} is not valid YAML ({getattr(e, 'problem', None) or e})") from e
    # YAML would turn an API key or a name like 0123, 0x1F, 1_000 or yes into a number or a bool
    return raw if text_field and value is not None else value


def _checked_overrides(cls: type, args: list[str]) -> dict[str, Any]:
    """Parse the override words against ``cls``: an unknown field (at any depth) or a value of the
    wrong type is blamed on the command line, even when a YAML file is loaded as well."""
    out = {}
    for key, raw in _split_overrides(args).items():
        tp, where = _field_type(cls, key), f"{COMMAND_LINE}: --{key}"
        value = _parse_value(raw, tp, where)
        _coerce(value, tp, where)  # type check only: from_dict builds the config
        out[key] = value
    return out


def _field_type(cls: type, key: str) -> Any:
    """The type of the field ``--a.b.c`` names, walking down nested config blocks."""
    parts = key.split(".")
    tp: Any = cls
    for depth, name in enumerate(parts):
        owner = _nested_dataclass(tp)
        if owner is None:
            parent = ".".join(parts[:depth])
            raise ConfigError(f"{COMMAND_LINE}: --{key}: {parent} is {_type_name(tp)}, not a block of fields")
        names = sorted(f.name for f in dataclasses.fields(owner))
        if name not in names:
            raise ConfigError(
                f"{COMMAND_LINE}: unknown field --{key} for {owner.__name__}; known: {', '.join(names)}"
            )
        tp = typing.get_type_hints(owner)[name]
    return tp


def _block_fields(cls: type, key: str, value: Any) -> list[tuple[str, Any]]:
    """``--block "{a: 1, inner: {b: 2}}"`` → ``[("block.a", 1), ("block.inner.b", 2)]`` when ``block``
    (and ``inner``) are blocks of fields; any other value stays whole."""
    if isinstance(value, dict) and value and _nested_dataclass(_field_type(cls, key)) is not None:
        return [kv for sub, v in value.items() for kv in _block_fields(cls, f"{key}.{sub}", v)]
    return [(key, value)]


def _merge(values: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Set ``a.b.c`` in nested mappings, keeping the other keys of each (the YAML's other limits)."""
    *heads, last = key.split(".")
    for depth, head in enumerate(heads):
        nested = values.get(head)
        if nested is None:
            nested = values[head] = {}
        elif not isinstance(nested, dict):
            block = ".".join(heads[: depth + 1])
            raise ConfigError(f"{source}: {block} is not a mapping, so --{key} cannot be set in it")
        values = nested
    values[last] = value


def from_dict(
    cls: type[T], values: dict[str, Any], source: str = "config", checks_source: str | None = None
) -> T:
    """Build ``cls`` from a mapping, coercing each value to its field's type; errors name ``source``
    (the class's own value checks: ``checks_source``, where the values came from several places)."""
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
        raise ConfigError(f"{checks_source or source}: {e}") from e


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | Path, command: str | None = None) -> None:
    """Write the resolved config as YAML (first line: the command that reproduces it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = f"# {command}\n" if command else ""
    path.write_text(head + yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True))


# --- type coercion -----------------------------------------------------------------------------


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _nested_dataclass(tp: Any) -> type | None:
    """The config block a field holds (``LimitsConfig``, or ``TranslatorConfig | None``), else None."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    if _is_union(tp):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1 and isinstance(inner[0], type) and dataclasses.is_dataclass(inner[0]):
            return inner[0]
    return None


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if _is_union(tp):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                pass
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


# --- the command line of an area: VERB [CONFIG] [ARG ...] [--field value ...] ---------------------


@dataclass(frozen=True)
class Verb:
    """One verb of an area CLI: the config its ``--field value`` words fill (None: it takes none),
    what it does, whether it reads a CONFIG YAML (the first word after the verb that does not start
    with ``--``), and the positional words it takes after CONFIG: ``"RESULTS_DIR"`` (exactly one) or
    ``"TEXT..."`` (one or more). A verb with positional words needs its CONFIG, or the two would be
    ambiguous."""

    config: type | None
    help: str
    yaml: bool = True
    args: str = ""

    def usage(self, prog: str, verb: str) -> str:
        words = [prog, verb] if verb else [prog]
        if self.config is not None and self.yaml:
            words.append("CONFIG" if self.args else "[CONFIG]")
        words += [self.args] if self.args else []
        words += ["[--field value ...]"] if self.config is not None else []
        return "usage: " + " ".join(words)


class CliArgs(NamedTuple):
    """What :func:`parse_cli` read: the verb, the CONFIG path, the loaded config (None for a verb
    without one), the positional words after CONFIG, and the command that reproduces the run."""

    verb: str
    path: str | None
    config: Any
    args: list[str]
    command: str


def configs_of(verbs: dict[str, Verb]) -> dict[str, type]:
    """Verb → config dataclass of the verbs that read a YAML (an area CLI's ``CONFIGS``)."""
    return {verb: v.config for verb, v in verbs.items() if v.config is not None and v.yaml}


def parse_cli(
    prog: str,
    verbs: dict[str, Verb],
    argv: Sequence[str],
    *,
    description: str = "",
    default_verb: str | None = None,
) -> CliArgs:
    """``VERB [CONFIG] [ARG ...] [--field value | --field=value | --flag ...]`` → :class:`CliArgs`.

    An area with a single unnamed verb (``verbs == {"": ...}``, e.g. ``crossling serve CONFIG``) takes
    no verb word; with ``default_verb``, words that do not start with a verb get it
    (``crossling eval CONFIG`` is ``crossling eval run CONFIG``). ``-h``/``--help`` prints the verbs,
    or after a verb its usage and every config field, and exits 0; a missing or unknown verb or wrong
    positional words print usage and exit 2 (as argparse does). Config errors raise ConfigError.
    """
    words = list(argv)
    if "" in verbs:
        verb, rest = "", words
    else:
        if default_verb and words and words[0] not in verbs and words[0] not in HELP_FLAGS:
            words.insert(0, default_verb)
        if not words or words[0] in HELP_FLAGS:
            _exit(_area_help(prog, verbs, description, default_verb), 0 if words else 2)
        if words[0] not in verbs:
            area_help = _area_help(prog, verbs, description, default_verb)
            _exit(f"{prog}: unknown verb {words[0]!r}\n\n{area_help}", 2)
        verb, rest = words[0], words[1:]
    spec = verbs[verb]
    if any(w in HELP_FLAGS for w in rest):
        _exit(_verb_help(prog, verb, spec), 0)
    path, args, flags = _split_words(prog, verb, spec, rest)
    config = load_config(spec.config, path, flags) if spec.config is not None else None
    return CliArgs(verb, path, config, args, " ".join([prog, *([verb] if verb else []), *rest]))


def _split_words(
    prog: str, verb: str, spec: Verb, rest: list[str]
) -> tuple[str | None, list[str], list[str]]:
    """CONFIG (if the verb reads one), the positional words after it, and the ``--field`` words."""
    first_flag = next((i for i, w in enumerate(rest) if w.startswith("--")), len(rest))
    given, flags = rest[:first_flag], rest[first_flag:]
    reads_yaml = spec.config is not None and spec.yaml
    path, positional = (given[0], given[1:]) if given and reads_yaml else (None, given)
    names = spec.args.split()
    variadic = bool(names) and names[-1].endswith("...")
    where = f"{prog} {verb}".strip()
    if len(positional) < len(names) or (len(positional) > len(names) and not variadic):
        if names:
            wanted = f"expected {'CONFIG ' if reads_yaml else ''}{spec.args}"
        else:
            wanted = (
                "expected at most CONFIG before the --field options"
                if reads_yaml
                else "takes no positional arguments"
            )
        _exit(f"{spec.usage(prog, verb)}\n{where}: error: {wanted}; got {given or 'none'}", 2)
    if flags and spec.config is None:
        _exit(f"{spec.usage(prog, verb)}\n{where}: error: takes no --field options; got {flags[0]}", 2)
    return path, positional, flags


def _area_help(prog: str, verbs: dict[str, Verb], description: str, default_verb: str | None) -> str:
    lines = [f"usage: {prog} <verb> ...", "", description.strip(), "", "verbs:"]
    width = max(len(v) for v in verbs)
    lines += [f"  {verb:<{width}}  {spec.help}" for verb, spec in verbs.items()]
    lines.append("")
    if default_verb:
        lines.append(f"`{prog} CONFIG ...` is `{prog} {default_verb} CONFIG ...`.")
    lines.append(f"Run `{prog} <verb> --help` for a verb's usage and fields.")
    return "\n".join(lines)


def _verb_help(prog: str, verb: str, spec: Verb) -> str:
    lines = [spec.usage(prog, verb), "", spec.help.strip()]
    if spec.config is not None:
        lines += ["", config_help(spec.config, yaml_file=spec.yaml)]
        lines += [
            "",
            "Values are read as YAML (10, 1e-4, [de,fr], {de: 0.5}, null; a text field keeps the text as",
            "typed); a bare --flag is true; - and _ are the same in names (--max-steps is --max_steps).",
        ]
    return "\n".join(lines)


def _exit(text: str, code: int) -> typing.NoReturn:
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    raise SystemExit(code)
