"""The pure-JAX pieces of training and evaluation: optimizer, train state, train and eval steps.

No files, no loop: `train.py` drives these, `evaluate.py` runs the eval step, and a user with an
own loop can call them directly.

**The train state** of one replica is a dict of arrays:

  params       nnx.State of the model's parameters
  model_state  nnx.State of its other variables: the dropout RNG streams (key, count)
  opt_state    optax state
  step         () int32, steps taken
  rng          (2,) uint32 key data of the augmentation stream
  nonfinite    () int32, steps skipped because the loss or a gradient was NaN or inf

**Seeds as a batch axis.** A run of `num_seeds` = S trains S independently initialised
replicas, seeds `seed .. seed + S - 1`, in one jit: every leaf gets a leading axis S
(`stack_states`), the step is `jax.vmap`ped over it, and each replica reads its own batch (its
own data order), so the batch is (S, B, ...). Replica i is the run `seed + i` would be alone
(same initialisation, data order, dropout and augmentation streams); only the reduction order
inside XLA may differ. A run of one seed is the same program with S = 1.

The model is split once (`nnx.split`) into a static graphdef and the state above; a step merges
them inside jit, so no NNX graph walking happens per step, and augmentation runs in the same jit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from micro_dualnet_jax import sharding
from micro_dualnet_jax.config import ModelConfig, OptimConfig, RunConfig
from micro_dualnet_jax.pipeline import augment, device_data
from micro_dualnet_jax.losses import total_loss
from micro_dualnet_jax.models import MicroDualNet
from micro_dualnet_jax.skeleton import get_layout

TrainState = dict[str, Any]


# ----------------------------------------------------------------------------- optimizer


def weight_decay_mask(params: nnx.State) -> Any:
  """True for the weight matrices ('kernel'): no decay on norms, biases and embeddings."""
  def is_kernel(path, _):
    return 'kernel' in [getattr(k, 'key', getattr(k, 'name', None)) for k in path]
  return jax.tree.map_with_path(is_kernel, params)


def make_optimizer(optim: OptimConfig | Mapping[str, Any], total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW with linear warm-up + cosine decay and global-norm clipping -> (tx, schedule).
  optim: an OptimConfig, or a mapping of its fields."""
  o = optim if isinstance(optim, OptimConfig) else OptimConfig.from_dict(optim)
  warmup = min(int(o.warmup_steps), max(total_steps - 1, 0))
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, o.learning_rate, warmup, max(total_steps, warmup + 1), o.learning_rate * o.final_lr_ratio)
  tx = optax.chain(
      optax.clip_by_global_norm(o.clip_norm) if o.clip_norm else optax.identity(),
      optax.adamw(schedule, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay,
                  mask=weight_decay_mask))
  return tx, schedule


# ----------------------------------------------------------------------------- state


def seed_keys(seed: int) -> dict[str, jax.Array]:
  """The three independent streams of replica `seed`: 'params', 'dropout', 'augment'."""
  base = jax.random.key(seed)
  return {name: jax.random.fold_in(base, i) for i, name in enumerate(
      ('params', 'dropout', 'augment'))}


def build_model(config: ModelConfig, seed: int) -> MicroDualNet:
  """The model of replica `seed`, in training mode."""
  keys = seed_keys(seed)
  return MicroDualNet(config, rngs=nnx.Rngs(params=keys['params'], dropout=keys['dropout']))


def init_train_state(model_config: ModelConfig, tx: optax.GradientTransformation,
                     seed: int) -> tuple[nnx.GraphDef, TrainState]:
  """(graphdef, state) of one replica, seed `seed` (unplaced: on the default device)."""
  model = build_model(model_config, seed)
  graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
  state = {
      'params': params, 'model_state': model_state, 'opt_state': tx.init(params),
      'step': jnp.zeros((), jnp.int32),
      'rng': jax.random.key_data(seed_keys(seed)['augment']),
      'nonfinite': jnp.zeros((), jnp.int32),
  }
  return graphdef, state


def stack_states(states: Sequence[TrainState]) -> TrainState:
  """Replica states -> one state with a leading seed axis on every leaf."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


def unstack_state(state: TrainState, index: int) -> TrainState:
  """Replica `index` of a stacked state."""
  return jax.tree.map(lambda x: x[index], state)


def create_train_states(model_config: ModelConfig, tx: optax.GradientTransformation,
                        mesh: jax.sharding.Mesh, seeds: Sequence[int]
                        ) -> tuple[nnx.GraphDef, TrainState]:
  """(graphdef, stacked state of `seeds`), replicated on the mesh.

  The state is built inside a jit whose output is replicated, so every process of a
  multi-process run holds the same global arrays without a host-to-global copy.
  """
  graphdef = nnx.split(nnx.eval_shape(lambda: build_model(model_config, seeds[0])))[0]
  init = jax.jit(lambda: stack_states([init_train_state(model_config, tx, s)[1] for s in seeds]),
                 out_shardings=sharding.replicated(mesh))
  return graphdef, init()


def replicate_stacked(states: Sequence[TrainState], mesh: jax.sharding.Mesh) -> TrainState:
  """Replica states (global arrays, e.g. restored ones) -> one stacked state on the mesh."""
  return jax.jit(lambda xs: stack_states(xs), out_shardings=sharding.replicated(mesh))(
      list(states))


def replica(state: TrainState, index: int, mesh: jax.sharding.Mesh) -> TrainState:
  """Replica `index` of a stacked state, replicated on the mesh (jitted, so it also works on
  the global arrays of a multi-process run)."""
  return _replica_fn(sharding.replicated(mesh))(state, index)


@functools.lru_cache(maxsize=None)
def _replica_fn(replicated: NamedSharding):
  return jax.jit(unstack_state, static_argnums=1, out_shardings=replicated)


def create_train_state(model_config: ModelConfig, tx: optax.GradientTransformation,
                       mesh: jax.sharding.Mesh, seed: int = 0
                       ) -> tuple[nnx.GraphDef, TrainState]:
  """(graphdef, state) of one replica, seed `seed`, replicated on the mesh."""
  graphdef, state = create_train_states(model_config, tx, mesh, [seed])
  return graphdef, replica(state, 0, mesh)


# ----------------------------------------------------------------------------- steps


def seeds_batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """(S, B, ...) batches: the seed axis replicated, B split over 'data'."""
  return NamedSharding(mesh, PartitionSpec(None, sharding.DATA_AXIS))


def train_step_fn(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, config: RunConfig
                  ) -> Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict]]:
  """One optimizer step of one replica, pure and unjitted: augment, forward/backward (with
  gradient accumulation over `optim.grad_accum` micro-batches), skip a non-finite update, AdamW.

  state as in the module docstring; batch: keypoints (B, L, V, C), confidence (B, L, V),
  num_frames (B,), label (B,), weight (B,) -> (new state, metrics: loss, ce, mac, accuracy,
  grad_norm).
  """
  layout = get_layout(config.model.layout)
  aug, loss_cfg, accum = config.augment, config.loss, config.optim.grad_accum

  def loss_fn(params, model_state, batch, key):
    inputs = augment.train_inputs(batch, key, layout, aug)
    # Fresh Variables at this trace level: the dropout streams advance their counts inside
    # the gradient trace, and NNX refuses to mutate Variables made outside it.
    model_state = jax.tree.map(lambda x: x, model_state)
    model = nnx.merge(graphdef, params, model_state)
    logits, aux = model(inputs['keypoints'], inputs['frame_mask'],
                        frame_positions=inputs['frame_positions'])
    loss, parts = total_loss(logits, aux, batch['label'], loss_cfg, weights=batch['weight'])
    correct = (jnp.argmax(logits, -1) == batch['label']) * batch['weight']
    parts['accuracy'] = jnp.sum(correct) / jnp.maximum(jnp.sum(batch['weight']), 1.0)
    return loss, (parts, nnx.state(model, nnx.Not(nnx.Param)))

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(state: TrainState, batch: dict[str, jax.Array]):
    key = jax.random.fold_in(jax.random.wrap_key_data(state['rng']), state['step'])
    if accum == 1:
      (_, (parts, model_state)), grads = grad_fn(state['params'], state['model_state'], batch,
                                                 key)
    else:
      micro = jax.tree.map(lambda x: x.reshape(accum, -1, *x.shape[1:]), batch)

      def body(carry, inputs):
        grads_sum, parts_sum, model_state = carry
        i, micro_batch = inputs
        (_, (parts, model_state)), grads = grad_fn(state['params'], model_state, micro_batch,
                                                   jax.random.fold_in(key, i))
        return (jax.tree.map(jnp.add, grads_sum, grads), jax.tree.map(jnp.add, parts_sum, parts),
                model_state), None

      shapes = jax.eval_shape(lambda: grad_fn(state['params'], state['model_state'], jax.tree.map(
          lambda x: x[0], micro), key))
      zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (shapes[1], shapes[0][1][0]))
      (grads, parts, model_state), _ = jax.lax.scan(
          body, (*zeros, state['model_state']), (jnp.arange(accum), micro))
      grads, parts = jax.tree.map(lambda x: x / accum, (grads, parts))
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(parts['loss']) & jnp.isfinite(grad_norm)
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    new_params = optax.apply_updates(state['params'], updates)
    # A non-finite step changes nothing but the counters (step, nonfinite and the dropout
    # streams' draw counts): the state stays restorable and clean.
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    new_state = {
        **state, 'params': keep(new_params, state['params']), 'model_state': model_state,
        'opt_state': keep(opt_state, state['opt_state']), 'step': state['step'] + 1,
        'nonfinite': state['nonfinite'] + (~finite).astype(jnp.int32)}
    return new_state, {**parts, 'grad_norm': grad_norm}

  return step


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation,
                    config: RunConfig, mesh: jax.sharding.Mesh, *,
                    seeds_axis: bool = False
                    ) -> Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict]]:
  """`train_step_fn` under `jax.jit`, the state replicated and donated, the batch split over the
  mesh. seeds_axis: the state and the batch carry a leading seed axis (`stack_states`), and the
  step is vmapped over it (every metric gets the axis too)."""
  step = train_step_fn(graphdef, tx, config)
  batch_sharding = sharding.batch_sharding(mesh)
  if seeds_axis:
    step = jax.vmap(step)
    batch_sharding = seeds_batch_sharding(mesh)
  state_sharding = sharding.replicated(mesh)
  return jax.jit(step, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, state_sharding), donate_argnums=(0,))


def make_train_loop(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, config: RunConfig,
                    mesh: jax.sharding.Mesh, *, max_steps: int, data_on_device: bool
                    ) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
  """Many optimizer steps of every replica in one jitted call: `train_step_fn`, vmapped over the
  seed axis, in a `lax.fori_loop` whose trip count is an argument, so one compiled program runs
  any number of steps up to `max_steps` (K), and 1 step or K steps give the same state as
  K calls of one step, bit for bit.

  fn(state, source, seeds, num_steps) -> (state, metrics)
    state: the stacked train state (leading seed axis S), donated.
    source: data_on_device=True: the training split placed on the devices
      (`device_data.PackedSplit`); each step draws its batch on the device from (seed, step).
      data_on_device=False: K host batches stacked, (K, S, B, ...) with B split over the mesh;
      step i reads row i.
    seeds: (S,) int32, the replicas' seeds (their data-order streams).
    num_steps: () int32, the steps to run, 1 <= num_steps <= K.
    metrics: each step's metrics (`train_step_fn`), (K, S) per key; row i is step i of the call
      (rows from num_steps on are zeros).
  """
  step = jax.vmap(train_step_fn(graphdef, tx, config))
  batch_size = config.run.batch_size
  batch_sharding = seeds_batch_sharding(mesh)

  def batch_of(source, seeds, state, i):
    if data_on_device:
      batch = jax.vmap(lambda seed, at: device_data.sample_batch(source, seed, at, batch_size))(
          seeds, state['step'])
      return jax.lax.with_sharding_constraint(batch, batch_sharding)
    return jax.tree.map(lambda x: x[i], source)

  def many(state, source, seeds, num_steps):
    shapes = jax.eval_shape(step, state, batch_of(source, seeds, state, 0))[1]
    buffer = jax.tree.map(lambda s: jnp.zeros((max_steps, *s.shape), s.dtype), shapes)

    def body(i, carry):
      state, buffer = carry
      state, metrics = step(state, batch_of(source, seeds, state, i))
      return state, jax.tree.map(lambda b, m: b.at[i].set(m), buffer, metrics)

    return jax.lax.fori_loop(0, num_steps, body, (state, buffer))

  replicated = sharding.replicated(mesh)
  source_sharding = replicated if data_on_device else NamedSharding(
      mesh, PartitionSpec(None, None, sharding.DATA_AXIS))
  return jax.jit(many, in_shardings=(replicated, source_sharding, replicated, replicated),
                 out_shardings=(replicated, replicated), donate_argnums=(0,))


def stack_host_batches(batches: Sequence[Sequence[dict[str, np.ndarray]]],
                       mesh: jax.sharding.Mesh, global_batch_size: int, max_steps: int
                       ) -> dict[str, jax.Array]:
  """batches[i][s]: this process's batch of step i, replica s -> one global (K, S, B, ...) array
  per key for `make_train_loop(data_on_device=False)`; steps past len(batches) are zeros."""
  rows = [{k: np.stack([b[k] for b in per_seed]) for k in per_seed[0]} for per_seed in batches]
  stacked = {k: np.zeros((max_steps, *rows[0][k].shape), rows[0][k].dtype) for k in rows[0]}
  for i, row in enumerate(rows):
    for k, v in row.items():
      stacked[k][i] = v
  target = NamedSharding(mesh, PartitionSpec(None, None, sharding.DATA_AXIS))
  return {k: jax.make_array_from_process_local_data(
      target, v, (max_steps, v.shape[1], global_batch_size, *v.shape[3:]))
          for k, v in stacked.items()}


def eval_step_fn(graphdef: nnx.GraphDef, config: RunConfig
                 ) -> Callable[[Any, Any, dict[str, jax.Array]], dict[str, jax.Array]]:
  """The deterministic forward pass of one replica, pure and unjitted:
  fn(params, model_state, batch) -> logits (B, N), routing_weights (B, K, 2).

  Uniform temporal sampling, no dropout. Test-time views (`config.test_time`): `num_clips` = n
  reads every clip n times, the c-th taking the frame at fraction (c + 1/2) / n of each temporal
  segment (n = 1: the centre, the plain evaluation); `flip` adds the mirrored pose of each. The
  logits are the mean over these views. Routing weights are averaged over the unmirrored views
  only: mirroring swaps the left and right entities, and their weights must stay with the body
  part they describe.
  """
  layout = get_layout(config.model.layout)
  aug, views = config.augment, config.test_time

  def forward(params, model_state, batch):
    model = nnx.merge(graphdef, params, model_state)
    logits, routing = [], []
    for clip in range(views.num_clips):
      for mirrored in (False, True) if views.flip else (False,):
        inputs = augment.eval_inputs(batch, layout, aug, phase=(2 * clip + 1, 2 * views.num_clips),
                                     mirrored=mirrored)
        view_logits, aux = model(inputs['keypoints'], inputs['frame_mask'], deterministic=True)
        logits.append(view_logits)
        if not mirrored:
          routing.append(aux['routing_weights'])
    return {'logits': sum(logits) / len(logits), 'routing_weights': sum(routing) / len(routing)}

  return forward


def make_eval_step(graphdef: nnx.GraphDef, config: RunConfig,
                   mesh: jax.sharding.Mesh, *, seeds_axis: bool = False
                   ) -> Callable[[Any, dict[str, jax.Array]], dict[str, jax.Array]]:
  """`eval_step_fn` under jit as fn(state, batch), state a train state or any dict with
  'params' and 'model_state'. Outputs are sharded on the batch like the input. seeds_axis: the
  state has a leading seed axis; every replica scores the same batch, outputs (S, B, ...)."""
  forward = eval_step_fn(graphdef, config)

  def step(state, batch):
    return forward(state['params'], state['model_state'], batch)

  out_sharding = sharding.batch_sharding(mesh)
  if seeds_axis:
    step = jax.vmap(step, in_axes=(0, None))
    out_sharding = seeds_batch_sharding(mesh)
  return jax.jit(step, in_shardings=(sharding.replicated(mesh), sharding.batch_sharding(mesh)),
                 out_shardings=out_sharding)


def host_batches_to_global(batches: Sequence[dict[str, np.ndarray]], mesh: jax.sharding.Mesh,
                           global_batch_size: int) -> dict[str, jax.Array]:
  """Per-seed per-process batches -> one global (S, B, ...) batch for a seeds-axis step."""
  stacked = {k: np.stack([b[k] for b in batches]) for k in batches[0]}
  target = seeds_batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(
      target, v, (v.shape[0], global_batch_size, *v.shape[2:])) for k, v in stacked.items()}
