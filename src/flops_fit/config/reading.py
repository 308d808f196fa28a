"""Reading settings: a plain mapping into a config dataclass (each value's type checked), and
classes named by ``_target_`` (imported, and checked before anything is called).

Used by :mod:`flops_fit.config.settings` for the config groups and by
:mod:`flops_fit.planning.planner` for
plan.json, which is read as untrusted data.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch.nn as nn

from flops_fit.errors import FlopsFitError


def type_name(tp: Any) -> str:
    """A type annotation in words (for messages)."""
    names = {int: "a whole number", float: "a number", bool: "true or false", str: "a string",
             type(None): "null", list: "a list", dict: "a mapping"}
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return "a list of " + type_name(typing.get_args(tp)[0]).replace("a ", "", 1) + "s"
    return names.get(origin or tp, getattr(tp, "__name__", str(tp)))


def coerce(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp`` (int, float, bool, str, None, list[...], dict, unions)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return coerce(value, arg)
            except (TypeError, ValueError):
                continue
        raise TypeError
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise TypeError
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise TypeError
        (arg,) = typing.get_args(tp)
        return [coerce(v, arg) for v in value]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise TypeError
        return dict(value)
    if tp in (bool, str):
        if isinstance(value, tp):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        return float(value)
    return value


def from_mapping(cls: type, data: Any, group: str) -> Any:
    """Build dataclass ``cls`` from a mapping; one sentence for an unknown key or a bad type."""
    if not isinstance(data, dict):
        raise FlopsFitError(
            f"The {group} config is {data!r}, not a group of keys; choose an option such as "
            f"{group}=<name> or set {group}.<key>=<value>."
        )
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise FlopsFitError(
            f"Unknown key(s) {', '.join(unknown)} in the {group} config; "
            f"known keys are: {', '.join(sorted(known))}."
        )
    values = {}
    for key, value in data.items():
        try:
            values[key] = coerce(value, hints[key])
        except (TypeError, ValueError):
            what = f"{group}.{key}={value!r} is not {type_name(hints[key])}"
            if isinstance(value, (list, tuple)) and typing.get_origin(hints[key]) is list:
                arg = typing.get_args(hints[key])[0]
                bad = next(v for v in value if not _fits(v, arg))
                what = f"{group}.{key} holds {bad!r}, which is not {type_name(arg)}"
            raise FlopsFitError(
                f"{what}; set it to one, e.g. {group}.{key}={_example(cls, key)}."
            ) from None
    return cls(**values)


def _fits(value: Any, tp: Any) -> bool:
    try:
        coerce(value, tp)
        return True
    except (TypeError, ValueError):
        return False


def _example(cls: type, key: str) -> str:
    default = next(f for f in fields(cls) if f.name == key)
    value = default.default_factory() if callable(default.default_factory) else default.default
    if isinstance(value, list):
        return "[" + ",".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in value) + "]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) \
        else str(value)


def need(ok: bool, message: str) -> None:
    """Raise :class:`FlopsFitError` with ``message`` unless ``ok``."""
    if not ok:
        raise FlopsFitError(message)


def import_object(path: str, what: str = "model") -> Any:
    """Import ``package.module.Name``; one clear sentence when it does not exist.

    The working directory is importable, as with ``python -m``.
    """
    if not isinstance(path, str) or not path:
        raise FlopsFitError(f"{what} _target_ {path!r} is not a dotted path like "
                            "'pkg.module.Class'.")
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise FlopsFitError(
            f"{what} _target_ {path!r} is not a dotted path like 'pkg.module.Class'."
        )
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.append(str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FlopsFitError(
            f"Cannot import {what} _target_ {path!r} ({exc}); check the spelling or install "
            "the package that defines it."
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise FlopsFitError(
            f"Module {module_name!r} has no {attr!r}, so {what} _target_ {path!r} does not exist; "
            "check the class name."
        ) from exc


def import_model_class(path: str) -> type[nn.Module]:
    """The ``nn.Module`` subclass at ``path``; anything else is refused before it is called.

    Every path that builds a model from a name (command line, plan.json, validate, API) goes
    through here, so a plan.json cannot name ``os.system``.
    """
    obj = import_object(path, "model")
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
        raise FlopsFitError(f"model _target_ {path!r} is not a torch.nn.Module class; name "
                            "your model class.")
    return obj


def class_path(cls: type) -> str:
    """``module.QualName`` of a class (what ``_target_`` holds)."""
    return f"{cls.__module__}.{cls.__qualname__}"
