"""Loading YAML files and turning pydantic errors into messages that name the YAML key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ecoplan.errors import RulesError

__all__ = ["read_yaml", "validate", "format_loc"]

M = TypeVar("M", bound=BaseModel)


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """``yaml.SafeLoader`` (libyaml's when present) that refuses a key given twice in a mapping.

    Plain YAML keeps the last value silently, so a rules file with two ``targets:`` sections
    would lose the first without a word.
    """

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # let the base class report unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice (first on line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file safely; missing files and syntax errors raise ``RulesError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise RulesError(f"{path}: is a folder, not a YAML file") from None
    except UnicodeDecodeError as err:
        raise RulesError(
            f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8 "
            "(a Thai Windows editor may have saved it as TIS-620 / cp874)"
        ) from err
    except OSError as err:
        raise RulesError(f"{path}: cannot read ({err.strerror})") from err
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise RulesError(f"{path}: invalid YAML{where}: {problem}") from err


def format_loc(loc: tuple[Any, ...]) -> str:
    """``('buffers', 2, 'distance_m')`` -> ``buffers[2].distance_m``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    msg = error["msg"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "greater_than":
        msg = f"must be > {_num(ctx.get('gt'))}"
    elif kind == "greater_than_equal":
        msg = f"must be >= {_num(ctx.get('ge'))}"
    elif kind == "less_than_equal":
        msg = f"must be <= {_num(ctx.get('le'))}"
    elif kind == "less_than":
        msg = f"must be < {_num(ctx.get('lt'))}"
    elif kind == "value_error":
        msg = str(ctx.get("error", msg))
    elif kind == "literal_error":
        msg = f"must be one of {ctx.get('expected')}"
    elif kind == "string_pattern_mismatch":
        msg = f"must match {ctx.get('pattern')}"
    got = error.get("input")
    if isinstance(got, dict | list) or got is None:
        return msg
    return f"{msg} (got {got!r})"


def validate(
    model: type[M], data: Any, *, source: str | Path, context: dict[str, Any] | None = None
) -> M:
    """Validate ``data`` against ``model``; list every problem as ``source: key: message``."""
    try:
        return model.model_validate(data, context={"source": str(source), **(context or {})})
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = tuple(
                p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))
            )
            lines.append(f"{source}: {format_loc(loc)}: {_message(e)}")
        if len(lines) == 1:
            raise RulesError(lines[0]) from None
        n = len(lines) - 1
        more = "\n".join(f"  {line}" for line in lines[1:])
        head = f"{lines[0]} (and {n} more problem{'s' if n > 1 else ''} below)"
        raise RulesError(f"{head}\n{more}") from None
