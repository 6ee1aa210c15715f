"""Multi-host start-up: `jax.distributed.initialize` from config fields or the environment.

Sources, first match wins:
  1. config.distributed.{coordinator_address, num_processes, process_id} (explicit);
  2. environment CMEMO_COORDINATOR_ADDRESS / CMEMO_NUM_PROCESSES / CMEMO_PROCESS_ID;
  3. a cluster JAX detects itself (TPU pod slices, SLURM with several tasks, ...):
     config.distributed.auto=True calls `jax.distributed.initialize()` without arguments.
With none of them, nothing is done (single process).
"""
from __future__ import annotations

import os

import jax


def _settings(dist_config):
    get = (lambda k, d: dist_config.get(k, d)) if dist_config is not None else (lambda k, d: d)
    address = get("coordinator_address", "") or os.environ.get("CMEMO_COORDINATOR_ADDRESS", "")
    num = int(get("num_processes", 0) or os.environ.get("CMEMO_NUM_PROCESSES", 0) or 0)
    pid_cfg = get("process_id", -1)
    pid = int(pid_cfg if pid_cfg is not None and int(pid_cfg) >= 0 else os.environ.get("CMEMO_PROCESS_ID", -1))
    return address, num, pid, bool(get("auto", False))


def initialize_from(dist_config=None) -> bool:
    """Starts jax.distributed if configured; returns True when running multi-process."""
    address, num, pid, auto = _settings(dist_config)
    if address:
        if num < 1 or pid < 0:
            raise ValueError("multi-host: coordinator_address needs num_processes and process_id")
        # Cross-process collectives of the CPU backend (tests, laptops) need gloo; the setting
        # does not touch GPU/TPU backends. It must be set before the backends start.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
        return True
    if auto:
        jax.distributed.initialize()
        return True
    return False
