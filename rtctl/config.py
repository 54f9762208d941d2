"""YAML configs → typed, validated objects.

Every config section is a `StrictModel` (pydantic, unknown keys forbidden). `load_config` turns pydantic's
errors into one message per problem that names the dotted key, the bad value and what is allowed, so a
typo never runs silently with a default.
"""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Optional, TypeVar

import annotated_types as at
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or value is wrong; the message names the key and what is allowed."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _field_info(model: type[BaseModel], loc: tuple) -> tuple[Any, Any]:
    """Walk a dotted location through nested models; return (FieldInfo, parent model) or (None, model)."""
    cur: Any = model
    info = None
    for part in loc:
        if isinstance(part, int) or cur is None:
            continue
        fields = getattr(cur, "model_fields", None)
        if not fields or part not in fields:
            return None, cur
        info = fields[part]
        cur = _model_in(info.annotation)
    return info, cur


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        m = _model_in(arg)
        if m is not None:
            return m
    return None


def allowed(info: Any) -> str:
    """Human description of what a field accepts: its type, range and choices."""
    if info is None:
        return ""
    ann = info.annotation
    if typing.get_origin(ann) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(ann))
    lo = hi = None
    lo_op = hi_op = ""
    for m in info.metadata:
        if isinstance(m, at.Ge):
            lo, lo_op = m.ge, "≤"
        elif isinstance(m, at.Gt):
            lo, lo_op = m.gt, "<"
        elif isinstance(m, at.Le):
            hi, hi_op = m.le, "≤"
        elif isinstance(m, at.Lt):
            hi, hi_op = m.lt, "<"
    tname = getattr(ann, "__name__", str(ann).replace("typing.", ""))
    if lo is not None and hi is not None:
        return f"{tname} with {lo} {lo_op} value {hi_op} {hi}"
    if lo is not None:
        return f"{tname} with value {'≥' if lo_op == '≤' else '>'} {lo}"
    if hi is not None:
        return f"{tname} with value {'≤' if hi_op == '≤' else '<'} {hi}"
    return tname


def format_errors(err: ValidationError, model: type[BaseModel], source: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ".".join(str(p) for p in loc) or "<root>"
        if e["type"] == "extra_forbidden":
            _, parent = _field_info(model, loc[:-1])
            names = sorted(getattr(parent, "model_fields", {}) or {})
            lines.append(f"unknown key '{key}' (allowed keys here: {', '.join(names)})")
            continue
        info, _ = _field_info(model, loc)
        what = allowed(info)
        value = e.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        if e["type"] == "missing":
            lines.append(f"missing key '{key}' (expects {what})" if what else f"missing key '{key}'")
        else:
            lines.append(f"key '{key}' = {shown}: {e['msg']}" + (f" (allowed: {what})" if what else ""))
    return f"config error in {source}:\n  " + "\n  ".join(lines)


def parse_config(data: Any, model: type[T], source: str = "<config>") -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"config error in {source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_errors(err, model, source)) from None


def load_config(path: str | Path, model: type[T], overrides: dict[str, Any] | None = None) -> T:
    """Read YAML at ``path``, apply dotted ``overrides`` ({"tick.rate_hz": 100}), validate into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config error in {path}: not valid YAML ({err})") from None
    # An empty file would run on defaults, and a list has no keys: both are mistakes, never a silent run.
    if data is None:
        raise ConfigError(f"config error in {path}: the file is empty (a config is a YAML mapping of sections, "
                          f"e.g. 'driver:', 'policy:')")
    if not isinstance(data, dict):
        raise ConfigError(f"config error in {path}: the top level is a {type(data).__name__}, expected a mapping "
                          f"of sections (key: value)")
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    return parse_config(data, model, str(path))


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        data = data.setdefault(p, {})
    data[leaf] = value


def dump_config(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def config_difference(a: str, b: str, ignore: tuple[str, ...] = ()) -> Optional[str]:
    """The first dotted key whose value differs between two dumped configs (key order aside: a section moved
    to a shared class may list its keys in another order), or None; keys in ``ignore`` (e.g. where a run is
    placed) do not count."""
    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(d, dict):
            return {prefix: d}
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out if d else {prefix: d}

    fa, fb = flat(yaml.safe_load(a)), flat(yaml.safe_load(b))
    for key in sorted(set(fa) | set(fb)):
        name = key.rstrip(".")
        if name in ignore:
            continue
        if fa.get(key, "<absent>") != fb.get(key, "<absent>"):
            return f"{name}: {fa.get(key, '<absent>')!r} then, {fb.get(key, '<absent>')!r} now"
    return None
