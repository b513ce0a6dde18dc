"""A training split that lives on the devices, and batches drawn from it inside the jitted step.

The host loader (`loader.py`) reads, pads and ships every batch from the host. Skeleton splits are
small (NW-UCLA's training views: 1,020 clips, 30 MB; iMiGUE or MA-52: well under a few GB), so
they can instead be packed once and placed on every device; each step then draws its clips and
gathers their frames on the device, from (seed, step) alone:

  packed split (host, then replicated on the devices):
    keypoints  (F, V, C) float32   the frames of every clip, clip after clip (F = sum of n_i)
    confidence (F, V)    float32
    offsets    (N,)      int32     where clip i starts in the frames
    lengths    (N,)      int32     n_i, its number of frames (clips longer than L are
                                   subsampled to L on the host, as the host loader does)
    labels     (N,)      int32

  batch of replica `seed` at global step s (`sample_batch`), the host loader's batch layout:
    epoch, b = divmod(s, steps_per_epoch),   steps_per_epoch = max(1, N // B)
    order    = permutation of 0..N-1 drawn from key(seed)'s data stream folded with the epoch
    clip j   = order[(b * B + j) mod N],     j < B
    keypoints[j, t] = frames[offsets[clip j] + t] for t < n_j, else 0     (B, L, V, C)

There is no loader state to save: a resumed run draws the batches of its restored step. The
clips each epoch visits and their order are a function of (seed, epoch) as on the host path,
drawn with JAX's generator instead of NumPy's, so the two paths read the same data in different
orders. Every record is checked on the host while packing, with the host loader's checks and
messages (`Loader._read`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from micro_dualnet_jax import sharding
from micro_dualnet_jax.pipeline.loader import Loader

# jax.random.fold_in index of the data-order stream of a seed (steps.seed_keys uses 0, 1, 2).
DATA_STREAM = 3


@dataclasses.dataclass(frozen=True)
class PackedSplit:
  """A split as a few flat arrays (module docstring), on the host or on the devices."""
  keypoints: Any
  confidence: Any
  offsets: Any
  lengths: Any
  labels: Any
  max_frames: int

  @property
  def num_clips(self) -> int:
    return int(self.lengths.shape[0])

  @property
  def nbytes(self) -> int:
    return sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in self.arrays.values())

  @property
  def arrays(self) -> dict[str, Any]:
    return {'keypoints': self.keypoints, 'confidence': self.confidence, 'offsets': self.offsets,
            'lengths': self.lengths, 'labels': self.labels}


DEFAULT_BUDGET_MB = 2048


def budget_bytes(budget_mb: int = 0) -> int:
  """The device memory a packed split may take: `budget_mb` when given, else a quarter of the
  first device's memory where it reports it (GPUs, TPUs), else DEFAULT_BUDGET_MB."""
  if budget_mb:
    return budget_mb * 2**20
  stats = jax.local_devices()[0].memory_stats() or {}
  if stats.get('bytes_limit'):
    return int(stats['bytes_limit']) // 4
  return DEFAULT_BUDGET_MB * 2**20


def pack_split(loader: Loader) -> PackedSplit:
  """Reads every record of `loader`'s source once (with its checks and its subsampling to L)."""
  clips = [loader._read(i) for i in range(len(loader))]  # pylint: disable=protected-access
  lengths = np.array([c['num_frames'] for c in clips], np.int32)
  offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
  return PackedSplit(
      keypoints=np.concatenate([c['keypoints'] for c in clips]).astype(np.float32),
      confidence=np.concatenate([c['confidence'] for c in clips]).astype(np.float32),
      offsets=offsets, lengths=lengths,
      labels=np.array([c['label'] for c in clips], np.int32), max_frames=loader.max_frames)


def place(packed: PackedSplit, mesh: jax.sharding.Mesh) -> PackedSplit:
  """The packed split replicated on the mesh: every device holds all of it. Every process
  passes the same host arrays, so no host-to-host exchange is needed."""
  return dataclasses.replace(packed, **{k: sharding.replicate_host_value(v, mesh)
                                        for k, v in packed.arrays.items()})


def data_key(seed: jax.Array | int) -> jax.Array:
  """The data-order stream of replica `seed`."""
  return jax.random.fold_in(jax.random.key(seed), DATA_STREAM)


def clip_indices(seed: jax.Array | int, step: jax.Array | int, num_clips: int,
                 batch_size: int) -> jax.Array:
  """(B,) int32: the clips replica `seed` reads at global step `step` (module docstring)."""
  steps_per_epoch = max(1, num_clips // batch_size)
  epoch, offset = jnp.divmod(jnp.asarray(step, jnp.int32), steps_per_epoch)
  order = jax.random.permutation(jax.random.fold_in(data_key(seed), epoch), num_clips)
  return order[(offset * batch_size + jnp.arange(batch_size)) % num_clips]


def gather_batch(packed: PackedSplit, indices: jax.Array) -> dict[str, jax.Array]:
  """The padded batch of the clips at `indices` (B,), as the host loader builds it:
  keypoints (B, L, V, C), confidence (B, L, V), num_frames, label, weight, index (B,)."""
  lengths = packed.lengths[indices]
  positions = jnp.arange(packed.max_frames)
  valid = positions[None, :] < lengths[:, None]                     # (B, L)
  frames = jnp.where(valid, packed.offsets[indices][:, None] + positions[None, :], 0)
  keypoints = jnp.where(valid[..., None, None], packed.keypoints[frames], 0.0)
  confidence = jnp.where(valid[..., None], packed.confidence[frames], 0.0)
  return {'keypoints': keypoints, 'confidence': confidence, 'num_frames': lengths,
          'label': packed.labels[indices], 'weight': jnp.ones(indices.shape, jnp.float32),
          'index': indices.astype(jnp.int32)}


def sample_batch(packed: PackedSplit, seed: jax.Array | int, step: jax.Array | int,
                 batch_size: int) -> dict[str, jax.Array]:
  """Replica `seed`'s training batch of global step `step` (jit-able; vmap it over seeds)."""
  return gather_batch(packed, clip_indices(seed, step, packed.num_clips, batch_size))


jax.tree_util.register_dataclass(
    PackedSplit, data_fields=['keypoints', 'confidence', 'offsets', 'lengths', 'labels'],
    meta_fields=['max_frames'])
