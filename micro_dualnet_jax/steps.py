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

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from micro_dualnet_jax import sharding
from micro_dualnet_jax import validation as check
from micro_dualnet_jax.config_utils import dataclass_kwargs
from micro_dualnet_jax.data import augment
from micro_dualnet_jax.losses import LossConfig, total_loss
from micro_dualnet_jax.models import MicroDualNet, ModelConfig
from micro_dualnet_jax.skeleton import get_layout

TrainState = dict[str, Any]
STATE_KEYS = ('params', 'model_state', 'opt_state', 'step', 'rng', 'nonfinite')


# ----------------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """AdamW with linear warm-up, cosine decay and global-norm clipping (`make_optimizer`).

  Attributes:
    learning_rate: the peak rate, reached after `warmup_steps`.
    final_lr_ratio: the rate at the last step, as a fraction of the peak.
    warmup_steps: linear warm-up from 0.
    weight_decay: decoupled decay, on weight matrices only (`weight_decay_mask`).
    b1, b2: Adam's moment decays.
    clip_norm: global gradient-norm clip (0: off).
    grad_accum: micro-batches per step; their gradients are averaged.
  """
  learning_rate: float = 1e-3
  final_lr_ratio: float = 0.01
  warmup_steps: int = 500
  weight_decay: float = 0.05
  b1: float = 0.9
  b2: float = 0.999
  clip_norm: float = 1.0
  grad_accum: int = 1

  def __post_init__(self):
    with check.section('optim config'):
      check.positive('learning_rate', self.learning_rate)
      check.number_in('final_lr_ratio', self.final_lr_ratio, 0.0, 1.0)
      check.integer('warmup_steps', self.warmup_steps, minimum=0)
      check.non_negative('weight_decay', self.weight_decay)
      check.number_in('b1', self.b1, 0.0, 1.0, high_open=True)
      check.number_in('b2', self.b2, 0.0, 1.0, high_open=True)
      check.non_negative('clip_norm', self.clip_norm)
      check.positive_int('grad_accum', self.grad_accum)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> OptimConfig:
    return cls(**dataclass_kwargs(cls, values, 'optim config keys'))


@dataclasses.dataclass(frozen=True)
class TestTimeConfig:
  """Evaluation views (`make_eval_step`): `num_clips` temporal phases per clip, each also
  mirrored with `flip`; the logits are averaged. 1 / False: one deterministic pass."""
  num_clips: int = 1
  flip: bool = False

  def __post_init__(self):
    with check.section('test_time config'):
      check.positive_int('num_clips', self.num_clips)
      check.boolean('flip', self.flip)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> TestTimeConfig:
    return cls(**dataclass_kwargs(cls, values, 'test_time config keys'))


def model_config(config: ml_collections.ConfigDict) -> ModelConfig:
  """ModelConfig from config.model; the MAC projection exists iff the InfoNCE MAC is on, the
  per-path heads iff the 'kl' MAC is."""
  return ModelConfig.from_dict({**config.model.to_dict(),
                                'mac_projection': config.loss.mac == 'infonce',
                                'path_heads': config.loss.mac == 'kl'})


def augment_config(config: ml_collections.ConfigDict) -> augment.AugmentConfig:
  cfg = augment.AugmentConfig.from_config(config.augment)
  if cfg.num_frames > config.model.num_frames:
    raise ValueError(f'augment.num_frames={cfg.num_frames} exceeds model.num_frames='
                     f'{config.model.num_frames}')
  return cfg


def test_time_config(config: ml_collections.ConfigDict) -> TestTimeConfig:
  """`config.test_time`, checked against the training augmentation.

  Mirrored views are refused for a model trained without mirroring (augment.flip_prob = 0): that
  setting means left and right tell classes apart (e.g. the synthetic set), and a mirrored view
  would vote for the opposite-side class."""
  views = TestTimeConfig.from_dict(config.test_time)
  if views.flip and config.augment.flip_prob == 0:
    raise ValueError('test_time.flip=True needs a model trained with mirroring '
                     '(augment.flip_prob > 0): with flip_prob 0 left and right tell classes apart, '
                     'and a mirrored view would vote for the other side\'s class')
  return views


# ----------------------------------------------------------------------------- optimizer


def weight_decay_mask(params: nnx.State) -> Any:
  """True for the weight matrices ('kernel'): no decay on norms, biases and embeddings."""
  def is_kernel(path, _):
    return 'kernel' in [getattr(k, 'key', getattr(k, 'name', None)) for k in path]
  return jax.tree.map_with_path(is_kernel, params)


def make_optimizer(optim: OptimConfig | Mapping[str, Any], total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW with linear warm-up + cosine decay and global-norm clipping -> (tx, schedule)."""
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


def init_train_state(config: ml_collections.ConfigDict, tx: optax.GradientTransformation,
                     seed: int) -> tuple[nnx.GraphDef, TrainState]:
  """(graphdef, state) of one replica, seed `seed` (unplaced: on the default device)."""
  model = build_model(model_config(config), seed)
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


def create_train_states(config: ml_collections.ConfigDict, tx: optax.GradientTransformation,
                        mesh: jax.sharding.Mesh, seeds: Sequence[int]
                        ) -> tuple[nnx.GraphDef, TrainState]:
  """(graphdef, stacked state of `seeds`), replicated on the mesh.

  The state is built inside a jit whose output is replicated, so every process of a
  multi-process run holds the same global arrays without a host-to-global copy.
  """
  graphdef = nnx.split(nnx.eval_shape(lambda: build_model(model_config(config), seeds[0])))[0]
  init = jax.jit(lambda: stack_states([init_train_state(config, tx, s)[1] for s in seeds]),
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


def create_train_state(config: ml_collections.ConfigDict, tx: optax.GradientTransformation,
                       mesh: jax.sharding.Mesh, seed: int | None = None
                       ) -> tuple[nnx.GraphDef, TrainState]:
  """(graphdef, state) of one replica (default seed: config.seed), replicated on the mesh."""
  seed = config.seed if seed is None else seed
  graphdef, state = create_train_states(config, tx, mesh, [seed])
  return graphdef, replica(state, 0, mesh)


# ----------------------------------------------------------------------------- steps


def seeds_batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """(S, B, ...) batches: the seed axis replicated, B split over 'data'."""
  return NamedSharding(mesh, PartitionSpec(None, sharding.DATA_AXIS))


def train_step_fn(graphdef: nnx.GraphDef, tx: optax.GradientTransformation,
                  config: ml_collections.ConfigDict
                  ) -> Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict]]:
  """One optimizer step of one replica, pure and unjitted: augment, forward/backward (with
  gradient accumulation over `optim.grad_accum` micro-batches), skip a non-finite update, AdamW.

  state as in the module docstring; batch: keypoints (B, L, V, C), confidence (B, L, V),
  num_frames (B,), label (B,), weight (B,) -> (new state, metrics: loss, ce, mac, accuracy,
  grad_norm).
  """
  layout = get_layout(config.model.layout)
  aug = augment_config(config)
  loss_cfg = LossConfig.from_dict(config.loss)
  accum = OptimConfig.from_dict(config.optim).grad_accum

  def loss_fn(params, model_state, batch, key):
    inputs = augment.train_inputs(batch, key, layout, aug)
    # Fresh Variables at this trace level: the dropout streams advance their counts inside
    # the gradient trace, and NNX refuses to mutate Variables made outside it.
    model_state = jax.tree.map(lambda x: x, model_state)
    model = nnx.merge(graphdef, params, model_state)
    logits, aux = model(inputs['keypoints'], inputs['frame_mask'])
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
                    config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, *,
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


def eval_step_fn(graphdef: nnx.GraphDef, config: ml_collections.ConfigDict
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
  aug = augment_config(config)
  views = test_time_config(config)

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


def make_eval_step(graphdef: nnx.GraphDef, config: ml_collections.ConfigDict,
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
