"""Turn a pydantic ``ValidationError`` into one clear ``SpecError`` line.

The line is ``FILE:LINE: FIELD.PATH: expected <what>, found <value> (<type>)`` for the first
problem in the file (by line), followed by ``(+K more errors)`` when there are more. Unknown
keys get a "did you mean" suggestion from the fields allowed at that place, missing keys point
at the line of their parent mapping, and validator messages are passed through.

Locations are walked along the pydantic model: tags that pydantic inserts for discriminated
unions (``("response", "soft_bounds", "dw_min")``) select the union member and are not printed.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..errors import SpecError
from ._yaml import KeyPath, format_path, line_of

__all__ = ["spec_error"]

_MAX_REPR = 60


@dataclass(frozen=True)
class _Place:
    """Where a pydantic ``loc`` points: the data path and the model holding the last key."""

    path: KeyPath  # keys and indices in the YAML data (no union tags)
    parent: type[BaseModel] | None  # model whose field is ``path[-1]`` (None: not a model)
    shown: KeyPath  # ``path`` for messages: mapping keys as str, so int keys don't read as [i]
    declared: Any = None  # the declared type at ``path`` (None where the walk cannot tell)


def _strip(tp: Any) -> Any:
    """Drop ``Annotated`` wrappers and ``None`` from optional types."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return _strip(members[0])
    return tp


def _union_members(tp: Any) -> list[Any]:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [_strip(a) for a in typing.get_args(tp) if a is not type(None)]
    return []


def _literal_tags(member: Any) -> list[str]:
    """Values of the ``Literal`` fields of a union member (its discriminator tags)."""
    out: list[str] = []
    if isinstance(member, type) and issubclass(member, BaseModel):
        for field in member.model_fields.values():
            ann = _strip(field.annotation)
            if typing.get_origin(ann) is Literal:
                out.extend(str(a) for a in typing.get_args(ann))
    return out


def _tags(member: Any) -> set[str]:
    """Names pydantic may insert into ``loc`` for this union member: Literal tags, class name."""
    return {getattr(member, "__name__", ""), *_literal_tags(member)}


def _place(model: type[BaseModel], loc: tuple[str | int, ...]) -> _Place:
    """Walk ``loc`` along the model's field types, dropping union tags and ``[key]`` markers."""
    path: list[str | int] = []
    shown: list[str | int] = []
    tp: Any = model
    parent: type[BaseModel] | None = None
    for part in loc:
        tp = _strip(tp)
        members = _union_members(tp)
        if members and isinstance(part, str):
            chosen = [m for m in members if part in _tags(m)]
            if chosen:  # a union tag: select the member, print nothing
                tp = chosen[0]
                continue
        if part == "[key]":  # pydantic's marker for a bad dict key
            continue
        path.append(part)
        origin = typing.get_origin(tp)
        is_seq = origin in (tuple, list)
        shown.append(part if is_seq and isinstance(part, int) else str(part))
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            parent = tp
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            tp = field.annotation if field is not None else None
        elif origin in (dict, Mapping) or (
            isinstance(origin, type) and issubclass(origin, Mapping)
        ):
            parent = None
            tp = typing.get_args(tp)[1] if typing.get_args(tp) else None
        elif is_seq:
            parent = None
            args = [a for a in typing.get_args(tp) if a is not Ellipsis]
            if isinstance(part, int) and len(args) > 1 and part < len(args):
                tp = args[part]
            else:
                tp = args[0] if args else None
        else:
            parent, tp = None, None
    return _Place(tuple(path), parent, tuple(shown), tp)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def _show(value: Any) -> str:
    """``'abc' (str)``: a short repr of a YAML value and its type."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = repr(list(value) if isinstance(value, tuple) else value)
    if len(text) > _MAX_REPR:
        text = text[: _MAX_REPR - 3] + "..."
    return f"{text} ({_type_name(value)})"


# What each pydantic error type expects, in words (``ctx`` fills the braces).
_EXPECTED: dict[str, str] = {
    "float_type": "a number (float)",
    "float_parsing": "a number (float)",
    "finite_number": "a finite number",
    "int_type": "an integer (int)",
    "int_parsing": "an integer (int)",
    "int_from_float": "an integer (int)",
    "bool_type": "true or false (bool)",
    "bool_parsing": "true or false (bool)",
    "string_type": "a string (str)",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping of 'key: value' lines",
    "model_type": "a mapping of 'key: value' lines",
    "model_attributes_type": "a mapping of 'key: value' lines",
    "literal_error": "one of {expected}",
    "greater_than": "a number > {gt}",
    "greater_than_equal": "a number >= {ge}",
    "less_than": "a number < {lt}",
    "less_than_equal": "a number <= {le}",
    "string_too_short": "a string of at least {min_length} characters",
    "string_too_long": "a string of at most {max_length} characters",
    "too_short": "a list of at least {min_length} items",
    "too_long": "a list of at most {max_length} items",
    "none_required": "null",
}


def _expected(err: ErrorDetails) -> str:
    if err["type"] == "string_too_short" and err.get("ctx", {}).get("min_length") == 1:
        return "a non-empty string"
    template = _EXPECTED.get(err["type"])
    if template is not None:
        try:
            return template.format(**err.get("ctx", {}))
        except (KeyError, IndexError):
            pass
    msg = err["msg"]
    for prefix in ("Input should be ", "Input should have "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg[:1].lower() + msg[1:]


def _validator_message(err: ErrorDetails) -> str:
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def _describe(model: type[BaseModel], err: ErrorDetails) -> tuple[KeyPath, KeyPath, str]:
    """``(line_path, shown_path, message)`` for one pydantic error."""
    loc = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx", {})
    if kind in ("value_error", "assertion_error"):
        extra = getattr(ctx.get("error"), "loc", ())  # FieldError: the field it is about
        at = _place(model, loc + tuple(extra))
        return at.path, at.shown, _validator_message(err)
    place = _place(model, loc)
    path, shown = place.path, place.shown
    if kind == "extra_forbidden":
        key = str(path[-1])
        allowed = list(place.parent.model_fields) if place.parent is not None else []
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            hint = f"did you mean {close[0]!r}?"
        elif allowed:
            hint = f"allowed keys here: {', '.join(allowed)}"
        else:
            hint = "remove it"
        return path, shown, f"unknown key {key!r}; {hint}"
    if kind == "missing" and isinstance(loc[-1], int) and isinstance(err["input"], list):
        # A fixed-length list (``input_shape: [8, 8]``): pydantic reports the absent item.
        return path[:-1], shown[:-1], _length_message(model, loc[:-1], err["input"])
    if kind == "missing":
        return path[:-1], shown, f"missing required key {path[-1]!r}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = str(ctx.get("discriminator", "'model'")).strip("'")
        expected = ctx.get("expected_tags") or _tags_of_union(model, loc, tag)
        if kind == "union_tag_not_found":
            return path, (*shown, tag), f"missing required key {tag!r} (one of {expected})"
        found = err["input"].get(tag) if isinstance(err["input"], Mapping) else None
        message = f"expected one of {expected}, found {_show(found)}"
        return (*path, tag), (*shown, tag), message
    return path, shown, f"expected {_expected(err)}, found {_show(err['input'])}"


def _length_message(model: type[BaseModel], loc: tuple[str | int, ...], found: list) -> str:
    """``expected a list of 3 items, found [8, 8] (list)`` for a short fixed-length list."""
    tp = _strip(_place(model, loc).declared)
    args = [a for a in typing.get_args(tp) if a is not Ellipsis]
    if typing.get_origin(tp) is tuple and len(args) == len(typing.get_args(tp)) and args:
        return f"expected a list of {len(args)} items, found {_show(found)}"
    return f"expected a longer list, found {_show(found)}"


def _tags_of_union(model: type[BaseModel], loc: tuple[str | int, ...], tag: str) -> str:
    """The values of the discriminator ``tag`` that the union at ``loc`` accepts, quoted."""
    tags: list[str] = []
    for member in _union_members(_strip(_place(model, loc).declared)):
        is_model = isinstance(member, type) and issubclass(member, BaseModel)
        field = member.model_fields.get(tag) if is_model else None
        ann = _strip(field.annotation) if field is not None else None
        if typing.get_origin(ann) is Literal:
            tags.extend(str(a) for a in typing.get_args(ann))
    return ", ".join(repr(t) for t in tags) or "the allowed models"


def _merge_typos(model: type[BaseModel], details: list[ErrorDetails]) -> list[ErrorDetails]:
    """Drop "missing 'noise_std'" when the same mapping has the unknown key 'nosie_std'.

    A misspelt required key yields both errors; the unknown-key one, with its suggestion, says
    everything, so the pair counts as one problem.
    """
    missing: dict[KeyPath, int] = {}
    for i, d in enumerate(details):
        if d["type"] == "missing":
            missing[_place(model, tuple(d["loc"])).path] = i
    drop: set[int] = set()
    for d in details:
        if d["type"] != "extra_forbidden":
            continue
        place = _place(model, tuple(d["loc"]))
        if place.parent is None:
            continue
        absent = [str(p[-1]) for p in missing if p[:-1] == place.path[:-1]]
        close = difflib.get_close_matches(str(place.path[-1]), absent, n=1)
        if close:
            drop.add(missing[(*place.path[:-1], close[0])])
    return [d for i, d in enumerate(details) if i not in drop]


def spec_error(
    err: ValidationError,
    *,
    model: type[BaseModel],
    path: str,
    lines: Mapping[KeyPath, int],
) -> SpecError:
    """One :class:`SpecError` line for ``err``, raised by ``model.model_validate(data)``.

    **Arguments:** ``err`` the pydantic error; ``model`` the model that was validated;
    ``path`` the file name for messages; ``lines`` the key lines from
    :func:`analog_hep.spec._yaml.load_yaml`.

    **Returns:** a :class:`SpecError` reading ``FILE:LINE: FIELD.PATH: message`` for the first
    problem by line, with ``(+K more errors)`` appended when pydantic found more.
    """
    details = _merge_typos(model, err.errors())
    problems = []
    for index, detail in enumerate(details):
        line_path, shown, message = _describe(model, detail)
        problems.append((line_of(lines, line_path), index, shown, message))
    problems.sort(key=lambda p: (p[0], p[1]))
    line, _, shown, message = problems[0]
    where = f"{format_path(shown)}: " if shown else ""
    more = f" (+{len(problems) - 1} more errors)" if len(problems) > 1 else ""
    text = f"{path}:{line}: {where}{message}{more}"
    return SpecError(" ".join(text.splitlines()))
