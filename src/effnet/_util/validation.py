"""Type checks for frozen config dataclasses: every field's value against its annotation, in the config's own
`__post_init__`, so a YAML file with `epochs: "ten"` or `epochs: 1.5` is refused when it is read."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from typing import Any

# Containers in a config file are small; anything bigger is an alias bomb or a mistake.
MAX_CONFIG_NODES = 10_000


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_field_types(config: Any, *, coerce: bool = True) -> None:
    """Raise ValueError naming the field, the value and the expected type (1.5 or true for an int is refused);
    with `coerce`, ints given for float fields become floats and lists given for tuple fields tuples (in place)."""
    hints = _field_types(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        fixed = _coerce(field.name, value, hints[field.name])
        if coerce and fixed is not value:
            object.__setattr__(config, field.name, fixed)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        if len(options) > 1:  # e.g. `bool | str`: the first type the value fits
            for option in options:
                try:
                    return _coerce(name, value, option)
                except ValueError:
                    continue
            names = " or ".join(getattr(option, "__name__", str(option)) for option in options)
            raise ValueError(f"{name} must be a {names}, got {value!r}")
        (hint,) = options
        args = typing.get_args(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return value if isinstance(value, float) else float(value)
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{name} must be a string, got {value!r}")
    if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list, got {value!r}")
        return tuple(_coerce(name, item, args[0]) for item in value)
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            shape = " [min, max]" if len(args) == 2 else ""
            raise ValueError(f"{name} must be a list of {len(args)} numbers{shape}, got {value!r:.60}")
        items = tuple(_coerce(name, item, arg) for item, arg in zip(value, args, strict=True))
        return items
    if dataclasses.is_dataclass(hint) and not isinstance(value, hint):
        raise ValueError(f"{name} must be a mapping of {hint.__name__} options, got {value!r}")
    return value


def check_size(value: Any, where: str, limit: int = MAX_CONFIG_NODES) -> None:
    """Refuse data holding more than `limit` values once YAML aliases are expanded (counted without expanding)."""
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            raise ValueError(
                f"{where} holds more than {limit} values once its YAML aliases (*name) are expanded; "
                "write the values out instead of nesting aliases"
            )
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


# ------------------------------------------------------------------------------------------ command-line flags
# argparse `type=` converters: every numeric flag is finite and in range when it is parsed, so no command starts
# (or allocates, or writes) with a value it cannot use. argparse prefixes the message with the flag's name.
class FlagValueError(argparse.ArgumentTypeError, ValueError):
    """A flag value out of range (argparse shows it as `argument --flag: <message>`; elsewhere a ValueError)."""


def whole_number(minimum: int, maximum: int) -> Callable[[str], int]:
    """A converter for integer flags in [minimum, maximum]."""

    def convert(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise FlagValueError(f"must be a whole number in [{minimum}, {maximum}], got {text!r}") from None
        if not minimum <= value <= maximum:
            raise FlagValueError(f"must be in [{minimum}, {maximum}], got {value}")
        return value

    convert.__name__ = f"whole number in [{minimum}, {maximum}]"
    return convert


def finite_number(minimum: float, maximum: float, *, above: bool = False) -> Callable[[str], float]:
    """A converter for float flags: finite and in [minimum, maximum] (or (minimum, maximum] with `above`)."""
    low = f"({minimum:g}" if above else f"[{minimum:g}"

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise FlagValueError(f"must be a number in {low}, {maximum:g}], got {text!r}") from None
        if not math.isfinite(value):
            raise FlagValueError(f"must be a finite number, got {text!r}")
        if value < minimum or (above and value == minimum) or value > maximum:
            raise FlagValueError(f"must be in {low}, {maximum:g}], got {text}")
        return value

    convert.__name__ = f"number in {low}, {maximum:g}]"
    return convert


def probability(text: str) -> float:
    """A converter for flags that are a fraction in [0, 1]."""
    return _PROBABILITY(text)


_PROBABILITY = finite_number(0.0, 1.0)

# Shared bounds: an image side beyond 4096 px is a 200M-value activation per channel on a CPU, and a thread or
# worker count beyond 1024 is more than any machine effnet runs on.
MAX_SIDE = 4096
MAX_THREADS = 1024
positive_int = whole_number(1, 2**31 - 1)
image_side = whole_number(16, MAX_SIDE)
thread_count = whole_number(1, MAX_THREADS)
fraction = finite_number(0.0, 1.0, above=True)  # a crop fraction, a tolerance: (0, 1]
pixel_std = finite_number(0.0, 100.0, above=True)  # a normalization std of [0, 1] pixels
data_seed = whole_number(0, 2**32 - 1)  # numpy's seeds


def check_range(value: Any, name: str, convert: Callable[[str], Any]) -> None:
    """Refuse a value (from a file or from Python) that `convert`, a flag's converter, would refuse: one source of
    truth for each range, whether the value comes from a flag, a config file or a weight file's metadata."""
    try:
        convert(repr(value) if isinstance(value, float) else str(value))
    except FlagValueError as err:
        raise ValueError(f"{name} {err}") from None
