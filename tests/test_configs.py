"""Every shipped YAML loads into its area's config dataclass, and its first line is the command
that runs it: configs cannot drift from the code (torchtune's test_configs, litgpt's config hub)."""

import shlex
from pathlib import Path

import pytest

from crossling.cli import AREAS, area_module
from crossling.config import load_config

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = REPO / "configs" / "accelerate"
YAMLS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if ACCELERATE not in p.parents)
ACCELERATE_YAMLS = sorted(ACCELERATE.glob("*.yaml"))


def test_there_are_configs():
    assert YAMLS or not (REPO / "configs").exists()


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_config_loads(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# crossling "), f"{path}: first line must be the command that runs it"
    words = shlex.split(first[2:])
    area = words[1]
    assert area in AREAS, f"{path}: unknown area {area!r}"
    rel = str(path.relative_to(REPO))
    assert rel in words, f"{path}: the command on the first line must name this file"
    configs = area_module(area).CONFIGS
    verb = words[2] if len(words) > 3 else ""
    cls = configs.get(verb) or configs.get("")
    assert cls is not None, f"{path}: {area} has no config for verb {verb!r}"
    load_config(cls, path)


@pytest.mark.parametrize("path", ACCELERATE_YAMLS, ids=lambda p: p.name)
def test_shipped_accelerate_config_loads(path):
    """accelerate's own format: accelerate must parse it, and its first line launches crossling."""
    from accelerate.commands.config.config_args import ClusterConfig

    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f"# accelerate launch --config_file {path.relative_to(REPO)} ")
    config = ClusterConfig.from_yaml_file(path)
    assert config.num_processes >= 1
