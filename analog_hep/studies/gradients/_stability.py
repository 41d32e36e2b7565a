"""Stability maps: where in the complex beta plane the nudged chip settles (paper Fig. 2b).

For every ``beta`` of a ``(M+1) x (M+1)`` grid over ``[-R, R] x [-R, R]`` the noiseless chip
settles for ``steps`` steps from its free fixed point under the nudge ``beta`` (all grid
points at once: they are rows of one batched settle). Stored per grid point, maximum over
the batch:

- ``residual``: the settle residual, the largest change ``|sigma(.) - s|`` of any neuron in
  the last step (activity units; NaN or overflow counts as infinite): small where a stable
  fixed point exists and was reached;
- ``distance``: the Euclidean distance of the nudged state from the free state over all
  neuron layers (activity units).

``stable_radius`` is the largest ``r`` such that every grid point with ``|beta| < r`` has a
residual at most ``tol``: hEP circles of radius below it only visit settled points.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import h5py
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Complex, Float

from ...emulator import Chip, SettleOut, dac, fabricate, free_phase, settle
from ...emulator._phases import tile_rows
from ...errors import SpecError
from ...spec import Circuit
from ._gradcheck import random_batch

__all__ = [
    "StabilityMap",
    "load_stability_map",
    "plot_stability_map",
    "save_stability_map",
    "stability_map",
]

FORMAT = "analog-hep-stability/1"


@dataclass(frozen=True)
class StabilityMap:
    """A settle-residual map over the complex beta plane.

    **Fields:** ``beta_re``, ``beta_im``: ``(M+1,)`` grid axes (dimensionless);
    ``residual``, ``distance``: ``(M+1, M+1)`` float64, indexed ``[im, re]`` (activity
    units); ``circuit``: name; ``circuit_text``: its YAML; ``steps``/``free_steps``: settle
    lengths; ``batch``/``seed``: the inputs; ``tol``: the residual taken as settled;
    ``stable_radius``, ``stable_fraction``: see the module docstring; ``free_residual``: of
    the free state (max over the batch); ``seconds``.
    """

    beta_re: np.ndarray
    beta_im: np.ndarray
    residual: np.ndarray
    distance: np.ndarray
    circuit: str
    circuit_text: str
    steps: int
    free_steps: int
    batch: int
    seed: int
    tol: float
    stable_radius: float
    stable_fraction: float
    free_residual: float
    seconds: float

    @property
    def extent(self) -> float:
        return float(self.beta_re[-1])

    @property
    def resolution(self) -> int:
        return int(self.beta_re.shape[0] - 1)

    def summary(self) -> dict[str, float | int | str]:
        """Scalars of the map (what ``--json`` prints)."""
        return {
            "circuit": self.circuit,
            "extent": self.extent,
            "resolution": self.resolution,
            "steps": self.steps,
            "free_steps": self.free_steps,
            "batch": self.batch,
            "seed": self.seed,
            "tol": self.tol,
            "stable_radius": self.stable_radius,
            "stable_fraction": self.stable_fraction,
            "free_residual": self.free_residual,
            "seconds": self.seconds,
        }


@eqx.filter_jit
def _chunk(
    chip: Chip,
    free: SettleOut,
    y: Float[Array, "b c"],
    betas: Complex[Array, " g"],
    *,
    steps: int,
) -> tuple[Float[Array, " g"], Float[Array, " g"]]:
    """``(residual, distance)`` per beta of ``betas``, max over the batch."""
    g, b = betas.shape[0], y.shape[0]
    x = free.states[0]
    init = tuple(tile_rows(s, g).astype(jnp.complex64) for s in free.states[1:])
    out = settle(
        chip, tile_rows(x, g), tile_rows(y, g), jnp.repeat(betas, b), init, steps=steps, key=None
    )
    res = out.residual.reshape(g, b)
    res = jnp.where(jnp.isfinite(res), res, jnp.inf)
    pairs = zip(out.states[1:], init, strict=True)
    sq = sum(jnp.sum(jnp.abs(s - s0) ** 2, axis=-1) for s, s0 in pairs)
    dist = jnp.sqrt(sq).reshape(g, b)
    dist = jnp.where(jnp.isfinite(dist), dist, jnp.inf)
    return jnp.max(res, axis=1), jnp.max(dist, axis=1)


def _stable_radius(beta: np.ndarray, residual: np.ndarray, tol: float, extent: float) -> float:
    bad = ~(residual <= tol)
    if not bad.any():
        return float(np.sqrt(2.0) * extent)
    return float(np.min(np.abs(beta[bad])))


def stability_map(
    circuit: Circuit,
    *,
    extent: float,
    resolution: int,
    steps: int,
    tol: float,
    batch: int = 1,
    seed: int = 0,
    free_steps: int | None = None,
    chunk: int = 16384,
) -> StabilityMap:
    """The settle residual over a grid of complex ``beta`` (paper Fig. 2b).

    **Arguments:**

    - ``circuit``: the chip is fabricated from ``circuit.spec.seed`` and run without noise.
    - ``extent``: the grid covers ``Re, Im in [-extent, extent]`` (dimensionless, > 0).
    - ``resolution``: ``M``, the grid has ``(M+1)^2`` points (paper: 1000, width 3).
    - ``steps``: nudged settle steps per point (paper: 200); ``free_steps``: for the free
      state (``None``: the circuit's).
    - ``tol``: largest residual counted as settled (activity units).
    - ``batch``, ``seed``: random inputs and targets (``random_batch``); the paper uses one.
    - ``chunk``: grid points per compiled call (memory; the last chunk is padded).

    **Returns:** a :class:`StabilityMap`.

    **Raises:** ``ValueError`` for a non-positive extent, resolution, steps or tol.
    """
    if not extent > 0 or resolution < 1 or steps < 1 or not tol > 0 or batch < 1:
        raise ValueError(
            f"need extent > 0, resolution >= 1, steps >= 1, tol > 0 and batch >= 1; got "
            f"extent={extent}, resolution={resolution}, steps={steps}, tol={tol}, batch={batch}"
        )
    t0 = time.perf_counter()
    spec = circuit.spec
    chip, _ = fabricate(spec, dict(circuit.devices), spec.seed, fast_devices=circuit.fast_devices)
    chip = chip.without_noise()
    cfg = chip.config
    t1 = cfg.free_steps if free_steps is None else int(free_steps)
    x, y = random_batch(cfg.layers[0], cfg.classes, batch, key=jr.PRNGKey(seed))
    x = dac(chip, x)
    free = free_phase(chip, x, steps=t1, key=None)
    axis = np.linspace(-extent, extent, resolution + 1)
    grid = (axis[None, :] + 1j * axis[:, None]).ravel()
    n = grid.shape[0]
    size = min(chunk, n)
    res = np.empty(n)
    dist = np.empty(n)
    for start in range(0, n, size):
        part = grid[start : start + size]
        m = part.shape[0]
        padded = np.concatenate([part, np.zeros(size - m, part.dtype)])
        r, d = _chunk(chip, free, y, jnp.asarray(padded, jnp.complex64), steps=int(steps))
        res[start : start + m] = np.asarray(r)[:m]
        dist[start : start + m] = np.asarray(d)[:m]
    shape = (resolution + 1, resolution + 1)
    return StabilityMap(
        beta_re=axis,
        beta_im=axis.copy(),
        residual=res.reshape(shape),
        distance=dist.reshape(shape),
        circuit=spec.name,
        circuit_text=circuit.text,
        steps=int(steps),
        free_steps=t1,
        batch=batch,
        seed=seed,
        tol=float(tol),
        stable_radius=_stable_radius(grid, res, tol, extent),
        stable_fraction=float(np.mean(res <= tol)),
        free_residual=float(jnp.max(free.residual)),
        seconds=time.perf_counter() - t0,
    )


def save_stability_map(smap: StabilityMap, path: str | Path) -> None:
    """Write ``smap`` to an HDF5 file (format ``analog-hep-stability/1``; replaces a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        h5.attrs["format"] = FORMAT
        h5.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        for k, v in smap.summary().items():
            h5.attrs[k] = v
        h5.attrs["circuit_text"] = smap.circuit_text
        for k in ("beta_re", "beta_im", "residual", "distance"):
            h5.create_dataset(k, data=getattr(smap, k), compression="gzip")


def load_stability_map(path: str | Path) -> StabilityMap:
    """Read a file written by :func:`save_stability_map`.

    **Raises:** :class:`~analog_hep.errors.SpecError` if it is not a stability-map file.
    """
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("format") != FORMAT:
                raise SpecError(f"{path}: not an analog-hep stability map")
            a = dict(h5.attrs)
            arrays = {k: np.asarray(h5[k]) for k in ("beta_re", "beta_im", "residual", "distance")}
    except OSError as err:
        raise SpecError(f"{path}: cannot read stability map ({err})") from None
    return StabilityMap(
        **arrays,
        circuit=str(a["circuit"]),
        circuit_text=str(a["circuit_text"]),
        steps=int(a["steps"]),
        free_steps=int(a["free_steps"]),
        batch=int(a["batch"]),
        seed=int(a["seed"]),
        tol=float(a["tol"]),
        stable_radius=float(a["stable_radius"]),
        stable_fraction=float(a["stable_fraction"]),
        free_residual=float(a["free_residual"]),
        seconds=float(a["seconds"]),
    )


def plot_stability_map(
    smap: StabilityMap, path: str | Path, *, circles: Sequence[float] = ()
) -> Path:
    """Draw the map (log10 residual over the beta plane) as a PNG; returns its path.

    Dark is settled, light is not (as in the paper's Fig. 2b); the white contour is ``tol``,
    the dashed circle ``stable_radius``, dotted circles the radii in ``circles``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    r = smap.extent
    with np.errstate(divide="ignore"):
        img = np.log10(np.clip(smap.residual, 1e-12, 1e3))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    im = ax.imshow(
        img,
        origin="lower",
        extent=(-r, r, -r, r),
        cmap="Blues_r",
        vmin=-8,
        vmax=1,
        interpolation="nearest",
    )
    fig.colorbar(im, ax=ax, label="log10 settle residual (activity units)")
    ax.contour(
        smap.beta_re,
        smap.beta_im,
        smap.residual,
        levels=[smap.tol],
        colors="white",
        linewidths=0.8,
    )
    t = np.linspace(0, 2 * np.pi, 400)
    if smap.stable_radius < r * np.sqrt(2):
        rs = smap.stable_radius
        ax.plot(
            rs * np.cos(t),
            rs * np.sin(t),
            "--",
            color="orange",
            lw=1.2,
            label=f"stable radius {rs:.3g}",
        )
    for c in circles:
        ax.plot(c * np.cos(t), c * np.sin(t), ":", color="red", lw=1.2, label=f"|beta| = {c:g}")
    ax.set_xlabel("Re beta")
    ax.set_ylabel("Im beta")
    ax.set_title(
        f"{smap.circuit}: settle residual after {smap.steps} steps "
        f"({100 * smap.stable_fraction:.0f}% below {smap.tol:g})",
        fontsize=10,
    )
    if smap.stable_radius < r * np.sqrt(2) or circles:
        ax.legend(loc="upper right", fontsize=8)
    with np.errstate(divide="ignore"):
        dimg = np.log10(np.clip(smap.distance, 1e-12, 1e3))
    im2 = ax2.imshow(
        dimg, origin="lower", extent=(-r, r, -r, r), cmap="viridis", interpolation="nearest"
    )
    fig.colorbar(im2, ax=ax2, label="log10 distance to the free state")
    ax2.set_xlabel("Re beta")
    ax2.set_ylabel("Im beta")
    ax2.set_title("distance of the nudged state from the free state", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
