"""Fuzz the spec YAML loader (issue 12): >= 1,000 generated documents (aliases, deep nesting,
huge numbers, binary bytes, non-UTF-8, wrong types in every field of a circuit, a device card
and a sweep file). Each ends in a loaded spec (exit 0) or one ``FILE:LINE`` error line naming
the file (exit 2), never a traceback, within a bounded time and memory per case.

Documents come from a seeded RNG, so a failure names a case that reproduces. The every-field
cases include a conv chip (``input_shape``, ``blocks`` and every block field, issue 14).
"""

from __future__ import annotations

import random
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from analog_hep.cli import main
from analog_hep.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]
BASES = {
    "circuit": (ROOT / "circuits" / "toy.yaml").read_text(encoding="utf-8"),
    "card": (ROOT / "devices" / "rram_exp.yaml").read_text(encoding="utf-8"),
    "sweep": (ROOT / "studies" / "fig2d.yaml").read_text(encoding="utf-8"),
}
# A conv chip with every block field on its own line, so that each gets the wrong-typed values
# (every-field cases only: the random mutations keep their seeded sequence over BASES).
CONV_BLOCKS = """blocks:
  - kind: conv
    channels: 4
    kernel: 3
    stride: 1
    padding: 1
    pool: softmax
    pool_size: 2
    temperature: 1.0
    in_channels: 1
  - kind: conv
    channels: 8
    kernel: 3
    stride: 1
    padding: 1
    pool: average
    pool_size: 2
    in_channels: 4
  - kind: dense
    units: 16
"""
_CNN = (ROOT / "tests" / "data" / "cnn_two_blocks.yaml").read_text(encoding="utf-8")
FIELD_BASES = {
    **BASES,
    "conv": _CNN[: _CNN.index("blocks:\n")] + CONV_BLOCKS + _CNN[_CNN.index("readout:\n") :],
}
CASE_SECONDS = 3.0  # per document, generous for a loaded 2-core machine (typical: < 0.05 s)
CASE_BYTES = 64 * 1024 * 1024  # traced peak per document (typical: < 2 MB)
RUN_BYTES = 512 * 1024 * 1024  # growth of the process's peak RSS over all documents

# Values of the wrong type, or hostile, for any field.
HOSTILE_VALUES = [
    "9" * 40,
    "-" + "9" * 400,
    "9" * 5000,
    "1e999",
    "-1e999",
    ".nan",
    "0x7fffffffffffffffffff",
    "0o777",
    "1_000_000",
    "190:20:30",
    "yes",
    "~",
    "''",
    '"text"',
    "[1, 2, 3]",
    "{a: 1, b: [2]}",
    "!!binary AAAA",
    "!!binary xx",
    "!!int abc",
    "!!float x",
    "!!python/object:os.system ls",
    "!!set {a, b}",
    "2001-13-45",
    "2001-12-14",
    "*nosuchanchor",
    "&a [1, *a]",
    "[" * 200 + "]" * 200,
    "'\\u0000'",
    '"\\x00\\udcff"',
    "- 1",
    ": :",
    "[1, 2",
    "true",
    "1e-5",
    "-0.0",
]


def _bomb(rng: random.Random) -> str:
    width = rng.randint(3, 10)
    levels = rng.randint(4, 10)
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _deep(rng: random.Random) -> str:
    depth = rng.randint(30, 1200)
    if rng.random() < 0.5:  # flow: PyYAML's scanner looks 1024 characters ahead per bracket
        depth = min(depth, 400)  # so deeper only costs time (the real command runs 600 below)
        return "deep: " + "[" * depth + "]" * depth + "\n"
    return "deep:\n" + "".join(" " * (i + 1) + "k:\n" for i in range(depth)) + " " * depth + " 1\n"


def _replace_value(rng: random.Random, text: str, value: str) -> str:
    lines = text.splitlines()
    spots = [i for i, line in enumerate(lines) if ":" in line and not line.lstrip().startswith("#")]
    i = rng.choice(spots)
    key = lines[i].split(":", 1)[0]
    lines[i] = f"{key}: {value}"
    return "\n".join(lines) + "\n"


def _mutate(rng: random.Random, text: str) -> bytes:
    """One random hostile edit of ``text``, as bytes (some are not UTF-8)."""
    kind = rng.randrange(10)
    data = text.encode("utf-8")
    if kind == 0:
        return (_replace_value(rng, text, rng.choice(HOSTILE_VALUES))).encode()
    if kind == 1:
        return (text + _bomb(rng)).encode()
    if kind == 2:
        return (text + _deep(rng)).encode()
    if kind == 3:  # binary bytes (or only control characters) at a random place
        at = rng.randrange(len(data) + 1)
        top = rng.choice([32, 256])
        return data[:at] + bytes(rng.randrange(top) for _ in range(rng.randint(1, 64))) + data[at:]
    if kind == 4:  # a Latin-1 value: not UTF-8
        return _replace_value(rng, text, "caf\xe9").encode("latin-1", errors="replace")
    if kind == 5:  # truncated
        return data[: rng.randrange(len(data) + 1)]
    if kind == 6:  # flipped bytes
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)
    if kind == 7:  # a duplicated line
        lines = text.splitlines(keepends=True)
        i = rng.randrange(len(lines))
        return "".join([*lines[: i + 1], lines[i], *lines[i + 1 :]]).encode()
    if kind == 8:  # two hostile values at once
        once = _replace_value(rng, text, rng.choice(HOSTILE_VALUES))
        return _replace_value(rng, once, rng.choice(HOSTILE_VALUES)).encode()
    return rng.choice([b"", b"- a\n- b\n", b"just text", b"\xef\xbb\xbf", b"---\n...\n"])


def _every_field(text: str) -> Iterator[bytes]:
    """Each ``key: value`` line of ``text`` with each of a few wrong-typed values."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if ":" not in line or line.lstrip().startswith("#"):
            continue
        key = line.split(":", 1)[0]
        for value in ("'a string'", "[1, 2]", "{x: 1}", "-1", "1.5", "true", "null", "9" * 30):
            edited = [*lines[:i], f"{key}: {value}", *lines[i + 1 :]]
            yield ("\n".join(edited) + "\n").encode()


def _cases() -> list[tuple[str, str, bytes]]:
    """``(id, kind, document)``: every field of each base, then seeded random mutations."""
    cases = []
    for kind, text in FIELD_BASES.items():
        for n, doc in enumerate(_every_field(text)):
            cases.append((f"{kind}-field-{n}", "circuit" if kind == "conv" else kind, doc))
    rng = random.Random(12)
    for n in range(620):
        kind = rng.choice(list(BASES))
        cases.append((f"{kind}-random-{n}", kind, _mutate(rng, BASES[kind])))
    cases.append(("circuit-huge", "circuit", BASES["circuit"].encode() + b"#" * 300_000 + b"\n"))
    return cases


CASES = _cases()


def _load_sweep(path: Path) -> None:
    from analog_hep.studies import load_sweep

    load_sweep(path)


def _one_case(kind: str, path: Path, capsys: pytest.CaptureFixture[str]) -> str | None:
    """Run one document; ``None`` if it loaded, else the error line (checked here)."""
    if kind == "sweep":
        try:
            _load_sweep(path)
        except SpecError as err:
            line = str(err)
            assert "\n" not in line and path.name in line, line
            return line
        return None
    code = main(["check", str(path)])
    out, err = capsys.readouterr()
    assert code in (0, 2), (code, err)
    if code == 0:
        assert err == "" and out, err
        return None
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("analog-hep check: error: ") and path.name in lines[0], err
    return lines[0]


def _traced(n: int, doc: bytes) -> bool:
    """Trace the memory of every hostile-shaped document and of every 40th one (tracing
    costs ~9x in time; the peak RSS bounds the others)."""
    return n % 40 == 0 or b": &" in doc or b"[[[" in doc or b"   k:" in doc or len(doc) > 10_000


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def test_fuzz_the_loader(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert len(CASES) >= 1000
    main(["check", "toy"])  # warm imports and JAX so that case timings are the loader's
    _load_sweep(ROOT / "studies" / "fig2d.yaml")
    capsys.readouterr()
    rss0 = _peak_rss_bytes()
    outcomes = {"loaded": 0, "refused": 0}
    limits = {"alias": 0, "nesting": 0, "bytes": 0, "UTF-8": 0, "unacceptable character": 0}
    for n, (case_id, kind, doc) in enumerate(CASES):
        path = tmp_path / f"{case_id}.yaml"
        path.write_bytes(doc)
        traced = _traced(n, doc)
        if traced:
            tracemalloc.start()
        t0 = time.perf_counter()
        try:
            line = _one_case(kind, path, capsys)
        except AssertionError as err:
            raise AssertionError(f"case {case_id}: {err}") from None
        except Exception as err:  # a traceback: the defect this test exists for
            raise AssertionError(f"case {case_id}: {type(err).__name__}: {err}") from err
        finally:
            peak = tracemalloc.get_traced_memory()[1] if traced else 0
            tracemalloc.stop()
        seconds = time.perf_counter() - t0
        assert seconds < CASE_SECONDS, f"case {case_id}: {seconds:.2f} s"
        assert peak < CASE_BYTES, f"case {case_id}: {peak / 2**20:.0f} MiB"
        outcomes["loaded" if line is None else "refused"] += 1
        for word in limits:
            limits[word] += line is not None and word in line
    grown = _peak_rss_bytes() - rss0
    assert grown < RUN_BYTES, f"peak RSS grew by {grown / 2**20:.0f} MiB"
    # The generator reaches the limits and the encodings, and some documents still load.
    assert outcomes["loaded"] >= 20 and outcomes["refused"] >= 800, outcomes
    assert all(n > 0 for n in limits.values()), limits


@pytest.mark.parametrize(
    "doc",
    [
        _bomb(random.Random(0)).replace("l0: &l0 [", "l0: &l0 [lol, ") + "layers: *l9\n",
        "layers: " + "[" * 600 + "]" * 600 + "\n",
        "a: 1\nb: \x00\x01binary\n",
    ],
    ids=["bomb", "deep", "binary"],
)
def test_the_real_command_exits_2_without_traceback(tmp_path: Path, doc: str) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_bytes(doc.encode("latin-1"))
    proc = subprocess.run(
        [sys.executable, "-m", "analog_hep", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "hostile.yaml:" in lines[0] and proc.stdout == ""
