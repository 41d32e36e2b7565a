"""A YAML loader for specs: line numbers for every key, honest floats, no duplicate keys.

PyYAML's ``SafeLoader`` follows YAML 1.1, which has three traps for hardware specs:

- ``1e-5`` and ``1.0e5`` (no dot, or no exponent sign) load as *strings*, so a conductance in
  siemens silently becomes text. Here any decimal number with a dot or an exponent is a float.
- ``yes``/``no``/``on``/``off`` load as booleans. Here only ``true``/``false`` are booleans
  (YAML 1.2); the other words stay strings and fail validation with a clear message.
- A repeated key silently keeps the last value. Here it is a :class:`SpecError` naming both lines.

The loader also records the 1-based line of every mapping key and sequence item, keyed by its
path from the document root (``("crossbars", "default", "init", "std")``, ``("layers", 2)``),
so that validation errors can say ``FILE:LINE``.

Hostile input costs bounded memory and time: a document is refused, with one line naming the
file and line, when it is larger than :data:`MAX_BYTES`, nests deeper than :data:`MAX_DEPTH`,
or expands to more than :data:`MAX_NODES` values once every alias is counted at each use (the
"billion laughs" bomb). These limits are checked on PyYAML's event stream, which is read
without recursion and without building the document, before anything is composed; a value
that a tag cannot convert (``!!int abc``, a 5,000-digit integer, a 13th month) is reported at
its line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    Event,
    NodeEvent,
    ScalarEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import SpecError

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "KeyPath",
    "SpecLoader",
    "YamlDoc",
    "check_limits",
    "decode_text",
    "format_path",
    "line_of",
    "load_yaml",
    "read_yaml",
]

KeyPath = tuple[str | int, ...]
"""Path from the document root to a value: mapping keys and sequence indices."""

MAX_BYTES = 256 * 1024
"""Largest spec document, in bytes (UTF-8): the shipped circuits, cards and sweeps are < 4 KiB,
and PyYAML reads about 2 MB/s, so a document costs at most ~0.2 s to read."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists (the specs nest at most 5 levels)."""
MAX_NODES = 20_000
"""Most values (scalars, lists, mappings) in a document, an alias counting as the values it
stands for at each use: caps the memory and time of composing and validating one document
(~0.7 s and ~20 MB at the limit)."""

_BOOL_TAG = "tag:yaml.org,2002:bool"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MERGE_TAG = "tag:yaml.org,2002:merge"

_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_FLOAT_RE = re.compile(
    r"""^(?:
        [-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?   # 1.5  1.  1.5e3  1.0e-5
      | [-+]?[0-9][0-9_]*[eE][-+]?[0-9]+                 # 1e-5  -2E+3  (a string in YAML 1.1)
      | [-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?          # .5  -.5e-3
      | [-+]?\.(?:inf|Inf|INF)
      | \.(?:nan|NaN|NAN)
    )$""",
    re.VERBOSE,
)


class SpecLoader(yaml.SafeLoader):
    """``SafeLoader`` with YAML 1.2 booleans and floats (see the module docstring).

    A value that its tag's constructor cannot convert (``!!int abc``, a 5,000-digit integer,
    ``2001-13-45``) raises ``ConstructorError`` at the value's line instead of a bare
    ``ValueError``.
    """

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.MarkedYAMLError:
            raise
        except (ValueError, TypeError, OverflowError, ArithmeticError) as err:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot convert {_short(node)}: {_one_line(str(err))}", node.start_mark
            ) from None


# Rebuild the implicit resolvers of the subclass only: drop YAML 1.1 bool and float, add ours.
SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SpecLoader.add_implicit_resolver(_BOOL_TAG, _BOOL_RE, list("tTfF"))
SpecLoader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RE, list("-+0123456789."))


@dataclass(frozen=True)
class YamlDoc:
    """A parsed YAML mapping with the line of every key.

    **Fields:** ``data`` the top-level mapping; ``lines`` 1-based line of each key path (the
    empty path is the line where the mapping starts); ``path`` the file name used in messages;
    ``text`` the source.
    """

    data: dict[str, Any]
    lines: Mapping[KeyPath, int]
    path: str
    text: str


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _short(node: Node) -> str:
    """``the value 'abc' (!!int)``: a node for messages, at most ~60 characters."""
    if not isinstance(node, ScalarNode):
        return "the value"
    text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    return f"the value {text!r} ({tag})"


@dataclass
class _Frame:
    """An open list or mapping in the event stream: its anchor, where its count began, and
    the deepest level reached inside it."""

    anchor: str | None
    nodes_before: int
    depth: int
    deepest: int


def _line(event: Event) -> int:
    return event.start_mark.line + 1 if event.start_mark is not None else 1


def check_limits(text: str, *, path: str) -> None:
    """Refuse a document that exceeds :data:`MAX_BYTES`, :data:`MAX_DEPTH` or :data:`MAX_NODES`.

    Reads PyYAML's event stream (iteratively: no recursion, no document built, memory bounded
    by the text), counting every alias as the values of its anchor and as deep as its anchor.

    **Raises:** :class:`SpecError` ``FILE:LINE: ...`` naming the limit; ``yaml.YAMLError`` for
    text that is not YAML (the caller turns it into a :class:`SpecError`).
    """
    # Characters never outnumber UTF-8 bytes: a long text is refused without encoding it.
    size = len(text) if len(text) > MAX_BYTES else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        line = text[:MAX_BYTES].count("\n") + 1
        raise SpecError(
            f"{path}:{line}: the document is larger than the limit of {MAX_BYTES} bytes "
            "(256 KiB) for a circuit, device card or sweep file"
        )
    loader = SpecLoader(text)
    try:
        _scan_events(loader, path)
    finally:
        loader.dispose()


def _scan_events(loader: SpecLoader, path: str) -> None:
    """The event loop of :func:`check_limits`."""
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels) it expands to
    stack: list[_Frame] = []
    nodes = 0
    while loader.check_event():
        event = loader.get_event()
        if not isinstance(event, NodeEvent | CollectionEndEvent):
            continue
        level = len(stack) + 1  # the level of a value that starts here
        if isinstance(event, AliasEvent):
            name = str(event.anchor)
            if any(f.anchor == name for f in stack):
                raise SpecError(
                    f"{path}:{_line(event)}: alias *{name} refers to a value that contains it "
                    "(a recursive alias); a spec cannot be recursive"
                )
            count, height = anchors.get(name, (1, 1))
            nodes += count
            reached = level + height - 1
        elif isinstance(event, ScalarEvent):
            nodes += 1
            reached = level
            if event.anchor is not None:
                anchors[str(event.anchor)] = (1, 1)
        elif isinstance(event, CollectionStartEvent):
            stack.append(_Frame(event.anchor, nodes, level, level))
            nodes += 1
            reached = level
        else:  # CollectionEndEvent
            frame = stack.pop()
            if frame.anchor is not None:
                anchors[str(frame.anchor)] = (
                    nodes - frame.nodes_before,
                    frame.deepest - frame.depth + 1,
                )
            reached = frame.deepest
        if reached > MAX_DEPTH:
            raise SpecError(
                f"{path}:{_line(event)}: nesting deeper than {MAX_DEPTH} levels of lists and "
                "mappings (counting aliases); a spec nests a few levels"
            )
        if nodes > MAX_NODES:
            raise SpecError(
                f"{path}:{_line(event)}: the document expands to more than {MAX_NODES} values "
                "here, counting each use of an alias as the values it stands for (an alias "
                "bomb?); a spec holds a few hundred"
            )
        if stack:
            stack[-1].deepest = max(stack[-1].deepest, reached)


def _key_value(loader: SpecLoader, node: Node) -> Any:
    """The Python value of a mapping key node (scalars only; other keys are kept as nodes)."""
    if isinstance(node, ScalarNode):
        return loader.construct_object(node)
    return node


def format_path(path: KeyPath) -> str:
    """``("crossbars", "default", "init", "std")`` -> ``crossbars.default.init.std``;
    ``("layers", 2)`` -> ``layers[2]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _record(
    loader: SpecLoader,
    node: Node,
    path: KeyPath,
    lines: dict[KeyPath, int],
    *,
    file: str,
    active: frozenset[int] = frozenset(),
) -> None:
    """Record the line of every key/item below ``node`` and reject duplicate keys."""
    if id(node) in active:  # a recursive alias: its lines are recorded already
        return
    active = active | {id(node)}
    if isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            lines.setdefault((*path, i), item.start_mark.line + 1)
            _record(loader, item, (*path, i), lines, file=file, active=active)
    elif isinstance(node, MappingNode):
        seen: dict[Any, int] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            key = _key_value(loader, key_node)
            line = key_node.start_mark.line + 1
            if isinstance(key, Node):
                continue  # a complex key: not a spec key, validation rejects it
            try:
                first = seen.get(key)
            except TypeError:  # unhashable keys are reported by the constructor
                continue
            if first is not None:
                where = format_path((*path, key))
                raise SpecError(
                    f"{file}:{line}: {where}: duplicate key {key!r} (first given at line "
                    f"{first}); give each key once"
                )
            seen[key] = line
            lines[(*path, key)] = line
            _record(loader, value_node, (*path, key), lines, file=file, active=active)
        # `<<: *anchor` merges: explicit keys win, merged keys point at their own lines.
        for merged in merges:
            sources = merged.value if isinstance(merged, SequenceNode) else [merged]
            for source in sources:
                sub: dict[KeyPath, int] = {}
                _record(loader, source, path, sub, file=file, active=active)
                for k, v in sub.items():
                    lines.setdefault(k, v)


def _kind(node: Node) -> str:
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, ScalarNode):
        return f"the single value {node.value!r}" if node.value else "empty"
    return "not a mapping"


def _yaml_error(err: yaml.YAMLError, *, text: str, path: str) -> SpecError:
    """One ``FILE:LINE: not valid YAML: ...`` line for a PyYAML error."""
    if isinstance(err, yaml.reader.ReaderError):  # a control character or NUL byte
        line = text.count("\n", 0, max(err.position, 0)) + 1
        char = f"#x{err.character:04x}" if isinstance(err.character, int) else repr(err.character)
        return SpecError(
            f"{path}:{line}: not valid YAML: unacceptable character {char} (binary data or "
            "control characters; a spec is text)"
        )
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else 1
        column = f" (column {mark.column + 1})" if mark is not None else ""
        problem = _one_line(err.problem or err.context or "syntax error")
        return SpecError(f"{path}:{line}: not valid YAML: {problem}{column}")
    return SpecError(f"{path}:1: not valid YAML: {_one_line(str(err))}")


def _compose(loader: SpecLoader, *, path: str) -> YamlDoc:
    """Compose and construct the single mapping document of ``loader``, with its key lines."""
    node = loader.get_single_node()
    if node is None:
        raise SpecError(f"{path}:1: not a YAML mapping: the file is empty")
    if not isinstance(node, MappingNode):
        raise SpecError(
            f"{path}:{node.start_mark.line + 1}: not a YAML mapping: the top level is "
            f"{_kind(node)}; a circuit or device card is a mapping of 'key: value' lines"
        )
    lines: dict[KeyPath, int] = {(): node.start_mark.line + 1}
    _record(loader, node, (), lines, file=path)
    data = loader.construct_document(node)
    return YamlDoc(data=data, lines=lines, path=path, text="")


def load_yaml(text: str, *, path: str) -> YamlDoc:
    """Parse ``text`` as one YAML mapping, recording the line of every key.

    **Arguments:** ``text`` the YAML source; ``path`` the file name used in messages.

    **Returns:** a :class:`YamlDoc`.

    **Raises:** :class:`SpecError` (one line, ``FILE:LINE: ...``) if the text is not YAML, is
    not a mapping at the top level, repeats a key within one mapping, or exceeds
    :data:`MAX_BYTES`, :data:`MAX_DEPTH` or :data:`MAX_NODES`.

    >>> load_yaml("g_max_S: 1e-5\\nlayers: [2, 3]\\n", path="x.yaml").data
    {'g_max_S': 1e-05, 'layers': [2, 3]}
    """
    loader: SpecLoader | None = None
    try:
        check_limits(text, path=path)  # before composing: bounded memory and time
        loader = SpecLoader(text)
        doc = _compose(loader, path=path)
    except yaml.YAMLError as err:
        raise _yaml_error(err, text=text, path=path) from None
    except RecursionError:  # not expected below MAX_DEPTH; never a traceback
        raise SpecError(f"{path}:1: nesting too deep to read") from None
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDoc(data=doc.data, lines=doc.lines, path=path, text=text)


def _read_capped(file: Path) -> bytes:
    """At most ``MAX_BYTES + 1`` bytes of a regular file (so /dev/zero or a FIFO costs nothing)."""
    try:
        if not file.exists():
            raise SpecError(f"{file}: file not found")
        if file.is_dir():
            raise SpecError(f"{file}: is a directory, expected a YAML file")
        if not file.is_file():
            raise SpecError(f"{file}: not a regular file, expected a YAML file")
        with file.open("rb") as handle:
            return handle.read(MAX_BYTES + 1)
    except OSError as err:
        raise SpecError(f"{file}: cannot read ({err.strerror or err})") from None


def read_yaml(file: Path) -> YamlDoc:
    """Read ``file`` (UTF-8, at most :data:`MAX_BYTES`) and parse it with :func:`load_yaml`.

    **Raises:** :class:`SpecError` naming the file (and the line, where there is one) if it
    cannot be read, is too large, is not UTF-8 text or is not a YAML mapping.
    """
    raw = _read_capped(file)
    if len(raw) > MAX_BYTES:
        line = raw[:MAX_BYTES].count(b"\n") + 1
        raise SpecError(
            f"{file}:{line}: the file is larger than the limit of {MAX_BYTES} bytes (256 KiB) for "
            "a circuit, device card or sweep file"
        )
    return load_yaml(decode_text(raw, file, expected="a spec is YAML text"), path=str(file))


def decode_text(raw: bytes, file: str | Path, *, expected: str) -> str:
    """``raw`` as UTF-8 text, or one :class:`SpecError` line naming ``file``, the line of the
    first bad byte and ``expected`` (what the file should hold)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise SpecError(
            f"{file}:{line}: not a UTF-8 text file ({err.reason} at byte {err.start}); {expected}"
        ) from None


def line_of(lines: Mapping[KeyPath, int], path: KeyPath) -> int:
    """Line of ``path``, or of its nearest recorded ancestor (e.g. a missing key's parent)."""
    for n in range(len(path), -1, -1):
        line = lines.get(path[:n])
        if line is not None:
            return line
    return 1
