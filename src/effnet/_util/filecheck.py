"""One gate for values read from files: weight and ONNX metadata, specs, configs, journals and class lists.

Every value effnet reads from a file passes through here before anything is allocated or created: its type and
range, its nesting depth, duplicate keys, its encoding and whether the path is a regular file at all; the records
check their own fields (`Preprocess`, `NetSpec.from_dict`, `TrainConfig`) and a recorded spec is checked against
the tensors beside it (`effnet.weights.reader.check_spec_fits`). A refusal is a `FileValueError` (a ValueError:
one line and exit 2 at the command line) naming the file and the field.
"""

from __future__ import annotations

import json
import os
import stat
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from effnet._util.validation import check_size

T = TypeVar("T")

# effnet's own files nest at most 4 deep (a checkpoint's config -> data options -> a list); 32 leaves room for
# any hand-written file and stays far below Python's recursion limit, which deeper data would reach.
MAX_DEPTH = 32
MAX_TEXT_BYTES = 16 * 2**20  # a config, spec or class list file; bigger is not one of them
MAX_NAME_CHARS = 256  # a class name or a run name


class FileValueError(ValueError):
    """A value read from a file that effnet cannot use: `<file>: <field> <problem>` on one line."""

    def __init__(self, file: str | Path, field: str, problem: str) -> None:
        self.file, self.field, self.problem = str(file), field, " ".join(problem.split())
        super().__init__(f"{file}: {field} {self.problem}")


def build(make: Callable[[Any], T], value: Any, file: str | Path, field: str) -> T:
    """`make(value)` (a from_dict), with its ValueError or TypeError (a missing or misspelled field) told as one
    line naming the file and the field."""
    try:
        return make(value)
    except (ValueError, TypeError) as err:
        raise FileValueError(file, field, f"is invalid: {err}") from None


# ------------------------------------------------------------------------------------------------ plain values
def require_int(value: Any, field: str, file: str | Path, lo: int, hi: int) -> int:
    """A whole number in [lo, hi] (true/false and 2.0 are not whole numbers here)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise FileValueError(file, field, f"must be a whole number, got {_short(value)}")
    if not lo <= value <= hi:
        raise FileValueError(file, field, f"must be in [{lo}, {hi}], got {value}")
    return value


def require_mapping(value: Any, field: str, file: str | Path) -> dict[str, Any]:
    """A mapping with string keys."""
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise FileValueError(file, field, f"must be a mapping of names to values, got {_short(value)}")
    return value


def require_name(value: Any, field: str, file: str | Path) -> str:
    """A printable name: a non-empty string of at most MAX_NAME_CHARS without control characters (a newline in a
    run or class name would forge lines in every log and listing that prints it)."""
    if not isinstance(value, str) or not value:
        raise FileValueError(file, field, f"must be a non-empty string, got {_short(value)}")
    if len(value) > MAX_NAME_CHARS:
        raise FileValueError(file, field, f"is longer than {MAX_NAME_CHARS} characters ({len(value)})")
    bad = control_character(value)
    if bad is not None:
        raise FileValueError(file, field, f"holds the control character {bad!r}: {_short(value)}")
    return value


def control_character(text: str) -> str | None:
    """The first control, format or line-separator character in `text` (None when it has none)."""
    return next((char for char in text if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")), None)


def require_class_names(value: Any, field: str, file: str | Path, count: int | None) -> tuple[str, ...]:
    """A list of `count` printable class names (any count when None)."""
    if not isinstance(value, (list, tuple)):
        raise FileValueError(file, field, f"must be a list of class names, got {_short(value)}")
    if count is not None and len(value) != count:
        raise FileValueError(file, field, f"lists {len(value)} names for {count} classes")
    return tuple(require_name(name, f"{field}[{index}]", file) for index, name in enumerate(value))


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else f"a {type(value).__name__} {value!r}"
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------- structure and text
def check_depth(value: Any, field: str, file: str | Path, limit: int = MAX_DEPTH) -> Any:
    """Refuse data nested deeper than `limit` (walked without recursion, so any depth is measured safely)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            if depth > limit:
                raise FileValueError(file, field, f"is nested deeper than {limit} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value


def parse_json(text: Any, field: str, file: str | Path) -> Any:
    """JSON text from a file's metadata, at most MAX_DEPTH levels deep."""
    if not isinstance(text, (str, bytes)):
        raise FileValueError(file, field, f"must be JSON text, got {_short(text)}")
    try:
        value = json.loads(text)
    except RecursionError:
        raise FileValueError(file, field, f"is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as err:  # JSONDecodeError, or bytes that are not UTF-8
        raise FileValueError(file, field, f"is not valid JSON ({err})") from None
    return check_depth(value, field, file)


def regular_file(path: str | Path, what: str, hint: str = "give a file") -> Path:
    """`path`, refused unless it is a regular file (opening a FIFO or a device would block or never end)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ValueError(f"{what} {path} does not exist; {hint}") from None
    except OSError as err:
        raise ValueError(f"cannot read {what} {path}: {err.strerror or err}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, socket or device)"
        raise ValueError(f"{what} {path} is {kind}; {hint}")
    return path


def read_text(path: str | Path, what: str, limit: int = MAX_TEXT_BYTES, hint: str = "give a file") -> str:
    """A small UTF-8 text file (a config, spec or class list); errors name the file and say what is wrong."""
    path = regular_file(path, what, hint)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise ValueError(f"cannot read {what} {path}: {err.strerror or err}") from None
    if len(data) > limit:
        raise ValueError(f"{what} {path} is larger than {limit // 2**20} MB; it is not a {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{what} {path} is not UTF-8 text (byte {data[err.start]:#04x} on line {line}); save it as UTF-8"
        ) from None


def read_class_list(path: str | Path, count: int) -> list[str]:
    """The class names of a text file, one a line (blank lines ignored): exactly `count` printable names."""
    text = read_text(path, "classes file", hint="give a text file with one class name per line")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != count:
        raise ValueError(
            f"{path} names {len(names)} classes but the model has {count} outputs; give one name per line for "
            "every class, in the training order"
        )
    return [require_name(name, f"class name {index + 1}", path) for index, name in enumerate(names)]


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML's spec forbids it; PyYAML keeps the
    last, so `epochs: 500` further down would silently win)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # Refused while parsing, at the first node too deep: PyYAML's composer recurses once per level.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark
                    )
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path, what: str = "config file") -> Any:
    """The data of a YAML file: UTF-8, no duplicate keys, at most MAX_DEPTH levels deep; one-line errors."""
    text = read_text(path, what)
    try:
        value = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise ValueError(f"{what} {path} is nested deeper than Python can read; flatten it") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ValueError(f"cannot read {what} {path}: {getattr(err, 'problem', None) or err}{where}") from None
    check_size(value, str(path))  # first: a walk of YAML aliases nested in aliases never ends
    return check_depth(value, "its content", path)
