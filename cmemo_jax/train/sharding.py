"""Device mesh and shardings: the batch is split over a 1-D 'data' axis, the state replicated.

Works the same for one CPU, 8 simulated CPU devices, a GPU box, a TPU slice and several hosts:
every process passes its own slice of the global batch and
`jax.make_array_from_process_local_data` assembles the global array.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh over all devices of all processes (data parallelism)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over 'data'; other axes whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def device_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Host NumPy batch (this process's rows) -> global jax arrays sharded on 'data'.

    Non-numeric entries (track ids as bytes) stay on the host and are dropped here.
    """
    sharding = batch_sharding(mesh)
    out = {}
    for key, value in local_batch.items():
        value = np.asarray(value)
        if value.dtype.kind in "biuf":
            out[key] = jax.make_array_from_process_local_data(sharding, value)
    return out


def check_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """Per-process batch size; the global batch must split evenly over devices and processes."""
    n_dev, n_proc = mesh.devices.size, jax.process_count()
    if global_batch_size % n_dev:
        raise ValueError(f"batch_size {global_batch_size} is not divisible by the {n_dev} devices of the mesh")
    return global_batch_size // n_proc
