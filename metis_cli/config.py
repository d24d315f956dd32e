"""YAML configs with ``key=value`` overrides (dotted keys reach into sections): one file per model,
and the experiment dir keeps the resolved result so that later stages read it instead of repeating options."""

from __future__ import annotations

import copy
from dataclasses import fields, is_dataclass
from pathlib import Path

import yaml

from metis_cli.errors import MetisError


def load_config(path, overrides: list[str] | None = None, resolve=None) -> dict:
    """The YAML at ``path``, completed by ``resolve`` (a trainer's defaults of its sections, so that an override
    may set a key the YAML leaves out), then the ``key=value`` overrides applied."""
    path = Path(path)
    if not path.is_file():
        raise MetisError(f"{path}: config not found")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise MetisError(f"{path}: not valid YAML ({exc})") from None
    if resolve is not None:
        config = resolve(config)
    return apply_overrides(config, overrides or [])


def parse_override(item: str) -> tuple[str, object]:
    """``key=value`` -> (key, value parsed as YAML: ``steps=[40,16,1]`` gives a list)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise MetisError(f"override '{item}' is not key=value")
    return key, yaml.safe_load(raw)


def check_keys(d: dict, known, what: str) -> None:
    """Refuses keys of ``d`` outside ``known`` (names, or a dataclass whose fields are the names)."""
    names = {f.name for f in fields(known)} if is_dataclass(known) else set(known)
    unknown = set(d) - names
    if unknown:
        raise MetisError(f"{what}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}")


def read_exp_config(exp_dir) -> dict:
    """The resolved config.yaml of an experiment dir."""
    path = Path(exp_dir) / "config.yaml"
    if not path.is_file():
        raise MetisError(f"{path}: not found; is {exp_dir} an experiment dir?")
    return yaml.safe_load(path.read_text())


def _typed(item: str, key: str, old, value):
    """``value`` as the type of the value it replaces (the config's own): an int where there was an int, a
    float where there was a float (``1e-3``, which YAML reads as a string, included), a bool, a list, a
    section; anything where there was null. Otherwise a one-line error naming the key and the type."""
    if old is None or value is None:
        return value
    kinds = (
        (bool, "true or false"),
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (list, "a list, e.g. [1,2]"),
        (dict, "a section"),
    )
    want = next(name for kind, name in kinds if isinstance(old, kind))
    if isinstance(old, bool):
        ok = isinstance(value, bool)
    elif isinstance(old, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        if isinstance(value, float) and value.is_integer():
            value, ok = int(value), True
    elif isinstance(old, float):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(old, str):
        ok = not isinstance(value, (list, dict))
        value = str(value) if ok and not isinstance(value, bool) else value
        ok = ok and isinstance(value, str)
    else:
        ok = isinstance(value, type(old))
    if not ok:
        raise MetisError(f"override '{item}': {key} takes {want} (the config has {old!r}), not {value!r}")
    return value


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """``a.b=3`` sets config["a"]["b"] = 3 (the value parsed as YAML, checked against the type of the value
    it replaces: ``_typed``); the key must already exist."""
    config = copy.deepcopy(config)
    for item in overrides:
        key, value = parse_override(item)
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise MetisError(f"override '{item}': no section '{part}' in the config")
            node = node[part]
        if parts[-1] not in node:
            raise MetisError(f"override '{item}': unknown key '{key}' (known here: {', '.join(sorted(node))})")
        node[parts[-1]] = _typed(item, key, node[parts[-1]], value)
    return config


def complete_sections(config: dict, types: dict, what: str) -> dict:
    """``config`` with each section named in ``types`` (section -> dataclass) completed by the dataclass's
    defaults; a key the dataclass lacks is refused. Other sections are kept as they are."""
    from dataclasses import asdict

    out = dict(config)
    for name, cls in types.items():
        section = config.get(name) or {}
        check_keys(section, cls, f"{what} {name}")
        out[name] = plain(asdict(cls(**section)))
    return out


def plain(value):
    """A config value as YAML writes it: tuples become lists, all the way down."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def save_config(config: dict, path) -> None:
    Path(path).write_text(yaml.safe_dump(plain(config), sort_keys=False))
