"""Device mesh, shardings and multi-process start (docs/scaling.md).

One mesh axis, 'data', spans every device of every process: the global batch is split on it and
parameters are replicated. `jax.jit` with these shardings is the replacement for `pmap`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from micro_dualnet_jax.dirlock import DirectoryLock
from micro_dualnet_jax.errors import ConfigError, DirectoryInUseError, OutputWriteError

DATA_AXIS = 'data'
# Variables that, when set, mean a launcher asked for a multi-process run.
_DISTRIBUTED_ENV = ('JAX_COORDINATOR_ADDRESS', 'COORDINATOR_ADDRESS')


def maybe_initialize_distributed() -> None:
  """Calls `jax.distributed.initialize()` when the environment asks for several processes.

  TPU pods and SLURM/Open MPI jobs are detected by JAX itself when JAX_COORDINATOR_ADDRESS or the
  cluster's own variables are set; a plain local run stays single-process. Explicit settings:
  JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES, JAX_PROCESS_ID (and, on CPU,
  JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo).
  """
  if jax.distributed.is_initialized():
    return
  address = next((os.environ[k] for k in _DISTRIBUTED_ENV if os.environ.get(k)), None)
  cluster = any(os.environ.get(k) for k in ('SLURM_JOB_ID', 'OMPI_COMM_WORLD_SIZE',
                                            'TPU_WORKER_HOSTNAMES'))
  if address is None and not cluster:
    return
  if os.environ.get('JAX_CPU_COLLECTIVES_IMPLEMENTATION'):
    jax.config.update('jax_cpu_collectives_implementation',
                      os.environ['JAX_CPU_COLLECTIVES_IMPLEMENTATION'])
  kwargs = {}
  if address is not None:
    kwargs = dict(coordinator_address=address,
                  num_processes=int(os.environ['JAX_NUM_PROCESSES']),
                  process_id=int(os.environ['JAX_PROCESS_ID']))
  jax.distributed.initialize(**kwargs)
  # One line per process, so a launcher's logs show at a glance that every process joined.
  print(f'jax.distributed: process {jax.process_index()} of {jax.process_count()} joined on '
        f'{socket.gethostname()}; {jax.local_device_count()} local / {jax.device_count()} global '
        f'devices ({jax.local_devices()[0].platform})', flush=True)


def any_process(flag: bool) -> bool:
  """True on every process iff `flag` is True on at least one.

  With several processes this is a collective: every process must call it at the same point of
  the program. It lets them take the same decision (stop after this step, skip a checkpoint).
  """
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def acquire_on_process_0(lock: DirectoryLock) -> None:
  """Process 0 takes `lock`: a folder's lock belongs to the run, not to each of its processes.

  A collective (every process calls it at the same point). When another run holds the lock,
  every process raises DirectoryInUseError (process 0 naming the holder); when the lock file
  cannot be created, process 0 raises OutputWriteError and the others DirectoryInUseError.
  """
  error = None
  if jax.process_index() == 0:
    try:
      lock.acquire()
    except (DirectoryInUseError, OutputWriteError) as failure:
      error = failure
  if any_process(error is not None):
    raise error or DirectoryInUseError(f'process 0 could not take the lock of {lock.what} '
                                       f'{lock.folder}')


def barrier(name: str) -> None:
  """Waits until every process reaches this point (a no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named 'data' over `devices` (default: every device of every process)."""
  devices = list(jax.devices() if devices is None else devices)
  return Mesh(np.array(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over 'data', the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def replicate_host_value(value: Any, mesh: Mesh) -> jax.Array:
  """A host value every process holds alike, as one global array replicated on the mesh."""
  value = np.asarray(value)
  return jax.make_array_from_callback(value.shape, replicated(mesh), lambda index: value[index])


def check_batch_size(global_batch_size: int, mesh: Mesh, name: str = 'batch_size') -> int:
  """Returns the per-process batch size; refuses a batch the devices cannot split evenly."""
  devices, processes = mesh.devices.size, jax.process_count()
  if global_batch_size % devices:
    raise ConfigError(f'{name} {global_batch_size} is not divisible by the {devices} devices '
                     f'of the mesh; use a multiple of {devices}')
  return global_batch_size // processes


def to_global(local_batch: dict[str, np.ndarray], sharding: NamedSharding,
              global_batch_size: int) -> dict[str, jax.Array]:
  """Per-process numpy batch -> global jax.Arrays sharded on the batch axis."""
  def convert(x):
    shape = (global_batch_size, *x.shape[1:])
    return jax.make_array_from_process_local_data(sharding, x, shape)
  return {k: convert(v) for k, v in local_batch.items()}


def fetch_global(x: jax.Array) -> np.ndarray:
  """A (possibly multi-process) global array as one numpy array on every process."""
  if x.is_fully_addressable:
    return np.asarray(x)
  if x.sharding.is_fully_replicated:   # a local copy is the whole array: no communication
    return np.asarray(x.addressable_data(0))
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))
