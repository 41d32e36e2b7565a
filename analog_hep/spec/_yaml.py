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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import SpecError

__all__ = [
    "KeyPath",
    "SpecLoader",
    "YamlDoc",
    "format_path",
    "line_of",
    "load_yaml",
    "read_yaml",
]

KeyPath = tuple[str | int, ...]
"""Path from the document root to a value: mapping keys and sequence indices."""

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
    """``SafeLoader`` with YAML 1.2 booleans and floats (see the module docstring)."""


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


def load_yaml(text: str, *, path: str) -> YamlDoc:
    """Parse ``text`` as one YAML mapping, recording the line of every key.

    **Arguments:** ``text`` the YAML source; ``path`` the file name used in messages.

    **Returns:** a :class:`YamlDoc`.

    **Raises:** :class:`SpecError` (one line, ``FILE:LINE: ...``) if the text is not YAML, is
    not a mapping at the top level, or repeats a key within one mapping.

    >>> load_yaml("g_max_S: 1e-5\\nlayers: [2, 3]\\n", path="x.yaml").data
    {'g_max_S': 1e-05, 'layers': [2, 3]}
    """
    loader = SpecLoader(text)
    try:
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
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else 1
        column = f" (column {mark.column + 1})" if mark is not None else ""
        problem = _one_line(err.problem or err.context or "syntax error")
        raise SpecError(f"{path}:{line}: not valid YAML: {problem}{column}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path}:1: not valid YAML: {_one_line(str(err))}") from None
    finally:
        loader.dispose()
    return YamlDoc(data=data, lines=lines, path=path, text=text)


def read_yaml(file: Path) -> YamlDoc:
    """Read ``file`` (UTF-8) and parse it with :func:`load_yaml`.

    **Raises:** :class:`SpecError` naming the file if it cannot be read or is not a YAML mapping.
    """
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{file}: file not found") from None
    except IsADirectoryError:
        raise SpecError(f"{file}: is a directory, expected a YAML file") from None
    except UnicodeDecodeError as err:
        raise SpecError(
            f"{file}: not a UTF-8 text file ({err.reason} at byte {err.start})"
        ) from None
    except OSError as err:
        raise SpecError(f"{file}: cannot read ({err.strerror or err})") from None
    return load_yaml(text, path=str(file))


def line_of(lines: Mapping[KeyPath, int], path: KeyPath) -> int:
    """Line of ``path``, or of its nearest recorded ancestor (e.g. a missing key's parent)."""
    for n in range(len(path), -1, -1):
        line = lines.get(path[:n])
        if line is not None:
            return line
    return 1
