"""Training and evaluation (DESIGN.md Section 2).

The model is split once (`nnx.split`) into a static graphdef and a state pytree; the train step
is a plain `jax.jit` over that state with explicit in/out shardings and buffer donation, so no
NNX graph walking happens per step. Augmentation runs inside the same jit. The host touches
device values only at logging, evaluation and checkpoint points.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from micro_dualnet_jax import metrics as metrics_lib
from micro_dualnet_jax import report, sharding
from micro_dualnet_jax.checkpoint import (Checkpointer, CheckpointWriteError, abstract_like,
                                          tree_checksum)
from micro_dualnet_jax.data import augment
from micro_dualnet_jax.data import datasets
from micro_dualnet_jax.data.loader import Loader
from micro_dualnet_jax.losses import LossConfig, total_loss
from micro_dualnet_jax.models import MicroDualNet, ModelConfig
from micro_dualnet_jax.skeleton import get_layout

TrainState = dict[str, Any]   # params, rest, opt_state, step, rng, nonfinite


class TrainingError(RuntimeError):
  """A run that cannot go on (non-finite loss, mismatched work directory, ...)."""


# ----------------------------------------------------------------------------- configuration


def model_config(config: ml_collections.ConfigDict) -> ModelConfig:
  """ModelConfig from config.model; the MAC projection exists iff the MAC loss is on."""
  return ModelConfig.from_dict({**config.model.to_dict(),
                                'mac_projection': config.loss.mac != 'none'})


def augment_config(config: ml_collections.ConfigDict) -> augment.AugmentConfig:
  cfg = augment.AugmentConfig.from_config(config.augment)
  if cfg.num_frames > config.model.num_frames:
    raise ValueError(f'augment.num_frames={cfg.num_frames} exceeds model.num_frames='
                     f'{config.model.num_frames}')
  return cfg


def test_time_views(config: ml_collections.ConfigDict) -> tuple[int, bool]:
  """(num_clips, flip) of `config.test_time`, checked.

  Mirrored views are refused for a model trained without mirroring (augment.flip_prob = 0): that
  setting means left and right tell classes apart (e.g. the synthetic set), and a mirrored view
  would vote for the opposite-side class."""
  num_clips, mirror = config.test_time.num_clips, config.test_time.flip
  if not isinstance(num_clips, int) or num_clips < 1:
    raise ValueError(f'test_time.num_clips must be an integer >= 1, got {num_clips!r}')
  if mirror and config.augment.flip_prob == 0:
    raise ValueError('test_time.flip=True needs a model trained with mirroring '
                     '(augment.flip_prob > 0): with flip_prob 0 left and right tell classes apart, '
                     'and a mirrored view would vote for the other side\'s class')
  return num_clips, bool(mirror)


def weight_decay_mask(params: nnx.State) -> Any:
  """True for the weight matrices ('kernel'): no decay on norms, biases and embeddings."""
  def is_kernel(path, _):
    return 'kernel' in [getattr(k, 'key', getattr(k, 'name', None)) for k in path]
  return jax.tree.map_with_path(is_kernel, params)


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW with linear warm-up + cosine decay and global-norm clipping."""
  o = config.optim
  warmup = min(int(o.warmup_steps), max(total_steps - 1, 0))
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, o.learning_rate, warmup, max(total_steps, warmup + 1), o.learning_rate * o.final_lr_ratio)
  tx = optax.chain(
      optax.clip_by_global_norm(o.clip_norm) if o.clip_norm else optax.identity(),
      optax.adamw(schedule, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay,
                  mask=weight_decay_mask))
  return tx, schedule


# ----------------------------------------------------------------------------- state and steps


def create_train_state(config: ml_collections.ConfigDict, tx: optax.GradientTransformation,
                       mesh: jax.sharding.Mesh) -> tuple[nnx.GraphDef, TrainState]:
  """Builds model + optimizer state, replicated on the mesh."""
  model = MicroDualNet(model_config(config), rngs=nnx.Rngs(params=config.seed))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  state = {
      'params': params, 'rest': rest, 'opt_state': tx.init(params),
      'step': jnp.zeros((), jnp.int32), 'nonfinite': jnp.zeros((), jnp.int32),
      'rng': jax.random.key_data(jax.random.key(config.seed + 1)),
  }
  return graphdef, jax.device_put(state, sharding.replicated(mesh))


def parameter_checksum(params: Any) -> str:
  """sha256 over the parameter bytes in tree order: equal iff the parameters are bit-identical."""
  return tree_checksum(params)


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation,
                    config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh
                    ) -> Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict]]:
  """One optimizer step: augment on device, forward/backward (with gradient accumulation over
  `optim.grad_accum` micro-batches), skip non-finite updates, apply AdamW.

  The step is `jax.jit` with the batch sharded on 'data', the state replicated and donated.
  """
  layout = get_layout(config.model.layout)
  aug = augment_config(config)
  loss_cfg = LossConfig.from_dict(config.loss)
  accum = int(config.optim.grad_accum)

  def loss_fn(params, rest, batch, key):
    aug_key, dropout_key = jax.random.split(key)
    inputs = augment.train_inputs(batch, aug_key, layout, aug)
    model = nnx.merge(graphdef, params, rest)
    logits, aux = model(inputs['keypoints'], inputs['frame_mask'],
                        rngs=nnx.Rngs(dropout=dropout_key))
    loss, parts = total_loss(logits, aux, batch['label'], loss_cfg, weights=batch['weight'])
    correct = (jnp.argmax(logits, -1) == batch['label']) * batch['weight']
    parts['accuracy'] = jnp.sum(correct) / jnp.maximum(jnp.sum(batch['weight']), 1.0)
    return loss, parts

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(state: TrainState, batch: dict[str, jax.Array]):
    key = jax.random.fold_in(jax.random.wrap_key_data(state['rng']), state['step'])
    if accum == 1:
      (_, parts), grads = grad_fn(state['params'], state['rest'], batch, key)
    else:
      micro = jax.tree.map(lambda x: x.reshape(accum, -1, *x.shape[1:]), batch)

      def body(carry, inputs):
        i, micro_batch = inputs
        (_, parts), grads = grad_fn(state['params'], state['rest'], micro_batch,
                                    jax.random.fold_in(key, i))
        return jax.tree.map(jnp.add, carry, (grads, parts)), None

      zeros = jax.tree.map(jnp.zeros_like, (state['params'], jax.eval_shape(
          lambda: grad_fn(state['params'], state['rest'], jax.tree.map(lambda x: x[0], micro),
                          key)[0][1])))
      (grads, parts), _ = jax.lax.scan(body, zeros, (jnp.arange(accum), micro))
      grads, parts = jax.tree.map(lambda x: x / accum, (grads, parts))
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(parts['loss']) & jnp.isfinite(grad_norm)
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    new_params = optax.apply_updates(state['params'], updates)
    # A non-finite step changes nothing but the counter: the state stays restorable and clean.
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    new_state = {
        **state, 'params': keep(new_params, state['params']),
        'opt_state': keep(opt_state, state['opt_state']), 'step': state['step'] + 1,
        'nonfinite': state['nonfinite'] + (~finite).astype(jnp.int32)}
    return new_state, {**parts, 'grad_norm': grad_norm}

  state_sharding = sharding.replicated(mesh)
  return jax.jit(step, in_shardings=(state_sharding, sharding.batch_sharding(mesh)),
                 out_shardings=(state_sharding, state_sharding), donate_argnums=(0,))


def make_eval_step(graphdef: nnx.GraphDef, config: ml_collections.ConfigDict,
                   mesh: jax.sharding.Mesh) -> Callable[[TrainState, dict], dict[str, jax.Array]]:
  """Deterministic forward pass: uniform temporal sampling, no dropout.

  Test-time augmentation (`config.test_time`): `num_clips` = n reads every clip n times, the c-th
  taking the frame at fraction (c + 1/2) / n of each temporal segment (n = 1: the centre, the
  plain evaluation); `flip` adds the mirrored pose of each. The logits are the mean over these
  views. Routing weights are averaged over the unmirrored views only: mirroring swaps the left and
  right entities, and their weights must stay with the body part they describe.

  Returns logits (B, N) and routing_weights (B, K, 2), sharded on the batch like the input.
  """
  layout = get_layout(config.model.layout)
  aug = augment_config(config)
  num_clips, mirror = test_time_views(config)

  def step(state, batch):
    model = nnx.merge(graphdef, state['params'], state['rest'])
    logits, routing = [], []
    for clip in range(num_clips):
      for mirrored in (False, True) if mirror else (False,):
        inputs = augment.eval_inputs(batch, layout, aug, phase=(2 * clip + 1, 2 * num_clips),
                                     mirrored=mirrored)
        view_logits, aux = model(inputs['keypoints'], inputs['frame_mask'])
        logits.append(view_logits)
        if not mirrored:
          routing.append(aux['routing_weights'])
    return {'logits': sum(logits) / len(logits), 'routing_weights': sum(routing) / len(routing)}

  batch_sharding = sharding.batch_sharding(mesh)
  return jax.jit(step, in_shardings=(sharding.replicated(mesh), batch_sharding),
                 out_shardings=batch_sharding)


# ----------------------------------------------------------------------------- evaluation


@dataclasses.dataclass
class EvalResult:
  metrics: dict[str, Any]              # scalars + confusion matrix
  logits: np.ndarray                   # (N, num_classes) in source order
  routing_weights: np.ndarray          # (N, K, 2)
  labels: np.ndarray                   # (N,)
  indices: np.ndarray                  # (N,) source indices


def evaluate(eval_step, state: TrainState, loader: Loader, mesh: jax.sharding.Mesh,
             num_classes: int, *, ma52: bool = False) -> EvalResult:
  """One pass over `loader`'s split; every clip counted exactly once (padding rows dropped)."""
  batch_sharding = sharding.batch_sharding(mesh)
  accumulator = metrics_lib.MetricAccumulator(num_classes, ma52=ma52)
  keep = {'logits': [], 'routing_weights': [], 'labels': [], 'indices': []}
  for batch in loader.eval_batches():
    out = eval_step(state, sharding.to_global(batch, batch_sharding, loader.global_batch_size))
    logits = sharding.fetch_global(out['logits'])
    routing = sharding.fetch_global(out['routing_weights'])
    host = {k: sharding.fetch_global(v) for k, v in sharding.to_global(
        {k: batch[k] for k in ('label', 'weight', 'index')}, batch_sharding,
        loader.global_batch_size).items()} if jax.process_count() > 1 else batch
    valid = host['weight'] > 0
    accumulator.update(logits, host['label'], mask=valid.astype(np.float32))
    keep['logits'].append(logits[valid])
    keep['routing_weights'].append(routing[valid])
    keep['labels'].append(host['label'][valid])
    keep['indices'].append(host['index'][valid])
  arrays = {k: np.concatenate(v) for k, v in keep.items()}
  if len(arrays['indices']) != len(loader):
    raise TrainingError(f'evaluation saw {len(arrays["indices"])} clips, the split has '
                        f'{len(loader)}')
  return EvalResult(metrics=accumulator.compute(), **arrays)


# ----------------------------------------------------------------------------- the run


class _Stop:
  """SIGTERM/SIGINT flag: the loop saves a checkpoint and returns at the next step boundary."""

  def __init__(self):
    self.signal = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.signal = signum

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _check_workdir(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
    # One probe per process: processes sharing a work directory must not remove each other's.
    probe = os.path.join(workdir, f'.write_test.{jax.process_index()}.{os.getpid()}')
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as error:
    raise TrainingError(f'work directory {workdir!r} is not writable: {error}') from None


def _check_same_model(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Refuses to resume a work directory that was trained with a different model/loss config."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  with open(path) as f:
    old = json.load(f)
  diffs = []
  for section in ('model', 'loss'):
    before, now = old.get(section, {}), config[section].to_dict()
    for key in sorted(set(before) | set(now)):
      if before.get(key) != _jsonable(now.get(key)):
        diffs.append(f'{section}.{key}: {before.get(key)!r} in the work directory, '
                     f'{now.get(key)!r} now')
  if diffs:
    raise TrainingError(f'work directory {workdir!r} holds a run with a different model: '
                        + '; '.join(diffs) + '. Use a new --workdir or the old config.')


def _jsonable(value):
  return json.loads(json.dumps(value, default=str))


def _checkpoint_io(write: Callable[..., Any], *args, **kwargs) -> Any:
  """Runs a checkpoint write; a failed one stops the run with a TrainingError (its message says
  which checkpoints are intact and how to resume)."""
  try:
    return write(*args, **kwargs)
  except CheckpointWriteError as error:
    raise TrainingError(str(error)) from error


class _MetricsLog:
  """metrics.jsonl writer (process 0 only), plus TensorBoard event files in <workdir>/tensorboard
  when the optional `tensorboardX` package is installed.

  A run that resumes from step S first drops the records of steps after S: the steps are
  trained again from the checkpoint, so the log keeps one record per step (and loses a line that
  a crash cut short).
  """

  def __init__(self, workdir: str, enabled: bool, resume_step: int = 0):
    self.path, self.enabled = os.path.join(workdir, 'metrics.jsonl'), enabled
    self.tensorboard = None
    if enabled:
      self._drop_after(resume_step)
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      except ImportError:
        return
      self.tensorboard = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def _drop_after(self, step: int) -> None:
    if not os.path.exists(self.path):
      return
    kept, dropped = [], 0
    with open(self.path) as f:
      for line in f:
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          dropped += 1
          continue
        if isinstance(record, dict) and isinstance(record.get('step'), int) \
            and record['step'] > step:
          dropped += 1
          continue
        kept.append(line if line.endswith('\n') else line + '\n')
    if dropped:
      with open(self.path + '.tmp', 'w') as f:
        f.writelines(kept)
      os.replace(self.path + '.tmp', self.path)
      logging.info('metrics.jsonl: dropped %d record(s) after step %d (trained again)', dropped,
                   step)

  def write(self, record: dict[str, Any]) -> None:
    if not self.enabled:
      return
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    if self.tensorboard is not None:
      for key, value in record.items():
        if key != 'step' and isinstance(value, (int, float)):
          self.tensorboard.add_scalar(key, value, record['step'])
      self.tensorboard.flush()

  def close(self) -> None:
    if self.tensorboard is not None:
      self.tensorboard.close()


Hook = Callable[[str, int], None]
HOOK_EVENTS = ('step', 'checkpoint', 'final_eval')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       hooks: Sequence[Hook] = ()) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming from its checkpoints) and evaluates; returns the
  summary written to summary.json.

  hooks: callables `hook(event, step)` run on the host, in order, at fixed points of the loop:
    'step' after training step `step` was dispatched and logged, before its checkpoint and the
    signal check; 'checkpoint' after the checkpoint of `step` was written (started, with
    async_checkpoints); 'final_eval' before the final evaluation. For progress reporting,
    profiling windows, or tests that stop a run at an exact point.
  """
  sharding.maybe_initialize_distributed()
  is_main = jax.process_index() == 0
  _check_workdir(workdir)
  _check_same_model(workdir, config)
  if is_main:   # written whole, then renamed: other processes may be reading the old one
    path = os.path.join(workdir, 'config.json')
    with open(path + '.tmp', 'w') as f:
      json.dump(_jsonable(config.to_dict()), f, indent=2)
    os.replace(path + '.tmp', path)

  mesh = sharding.make_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  splits = datasets.load_splits(config)
  train_loader = datasets.make_loader(config, splits.train, config.batch_size, 'train')
  eval_loader = datasets.make_loader(config, splits.eval, config.eval_batch_size, 'eval')
  total_steps = int(config.num_train_steps) or int(config.num_epochs
                                                   * train_loader.steps_per_epoch)
  tx, schedule = make_optimizer(config, total_steps)
  graphdef, state = create_train_state(config, tx, mesh)
  train_step = make_train_step(graphdef, tx, config, mesh)
  eval_step = make_eval_step(graphdef, config, mesh)
  ckpt = Checkpointer(workdir, keep=config.keep_checkpoints, best_metric=config.best_metric,
                      async_save=config.async_checkpoints, cleanup=True)
  restored = ckpt.restore(abstract_like(state))
  start_step, best, history_start = 0, {}, time.time()
  if restored is not None:
    start_step, state, meta = restored
    best = meta.get('best', {})
    logging.info('resumed from step %d', start_step)
    print(f'Resuming from checkpoint at step {start_step}', flush=True)

  log = _MetricsLog(workdir, is_main, resume_step=start_step)
  n_params = sum(x.size for x in jax.tree.leaves(state['params']))
  print(f'Micro-DualNet: {n_params:,} parameters; {len(train_loader)} train / '
        f'{len(eval_loader)} eval clips; {total_steps} steps of batch {config.batch_size} on '
        f'{jax.device_count()} device(s), {jax.process_count()} process(es)', flush=True)

  def meta_for(step):
    epoch, offset = divmod(step, train_loader.steps_per_epoch)
    return {'step': step, 'epoch': epoch, 'batch_in_epoch': offset, 'best': best,
            'model': _jsonable(config.model.to_dict()), 'seed': config.seed}

  saved = {'step': start_step}

  def call_hooks(event, step):
    for hook in hooks:
      hook(event, step)

  def save(step, force=False):
    if saved['step'] == step:
      return
    nonfinite = int(state['nonfinite'])
    if nonfinite:
      raise TrainingError(
          f'{nonfinite} training step(s) up to step {step} had a NaN or inf loss or gradient; '
          'those updates were skipped and no checkpoint was written after them. Lower '
          'optim.learning_rate, check the data for NaN keypoints, or set optim.clip_norm.')
    _checkpoint_io(ckpt.save, step, state, meta_for(step), force=force)
    saved['step'] = step
    call_hooks('checkpoint', step)
    print(f'Checkpoint at step {step} ' + ('written in the background' if config.async_checkpoints
                                            else 'saved'), flush=True)

  def run_eval(step):
    result = evaluate(eval_step, state, eval_loader, mesh, config.model.num_classes,
                      ma52=config.data.name == 'ma52')
    scalars = metrics_lib.scalar_metrics(result.metrics)
    log.write({'step': step, **{f'eval_{k}': v for k, v in scalars.items()}})
    # Strictly better only: of tied evaluations the first stays best, here and in best/.
    if not best or scalars[config.best_metric] > best.get(config.best_metric, -1):
      best.clear()
      best.update({**scalars, 'step': step})
      if int(state['nonfinite']) == 0:
        _checkpoint_io(ckpt.save_best, step, state, meta_for(step), scalars)
    print(f'[eval step {step}] ' + ', '.join(
        f'{k} {scalars[k]:.2f}' for k in ('top1', 'top5', 'f1_macro') if k in scalars),
          flush=True)
    return result

  step = start_step
  samples_since, t_last = 0, time.time()
  batch_sharding = sharding.batch_sharding(mesh)
  with _Stop() as stop:
    batches = train_loader.train_batches(start_step)
    while step < total_steps:
      batch = sharding.to_global(next(batches), batch_sharding, config.batch_size)
      state, step_metrics = train_step(state, batch)
      step += 1
      samples_since += config.batch_size
      if step % config.log_every_steps == 0 or step == total_steps:
        values = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
        if int(state['nonfinite']):
          save(step)   # raises TrainingError with the explanation
        now = time.time()
        rate = samples_since / max(now - t_last, 1e-9)
        eta = (total_steps - step) * config.batch_size / max(rate, 1e-9)
        values['learning_rate'] = float(schedule(step - 1))
        log.write({'step': step, **{f'train_{k}': v for k, v in values.items()},
                   'samples_per_s': rate})
        print(f'step {step}/{total_steps} loss {values["loss"]:.4f} (ce {values["ce"]:.4f} '
              f'mac {values["mac"]:.4f}) acc {values["accuracy"]:.3f} lr '
              f'{values["learning_rate"]:.2e} | {rate:.1f} samples/s | ETA {eta / 60:.1f} min',
              flush=True)
        samples_since, t_last = 0, now
      call_hooks('step', step)
      if config.eval_every_steps and step % config.eval_every_steps == 0 and step < total_steps:
        run_eval(step)
      if step % config.checkpoint_every_steps == 0 or step == total_steps:
        save(step)
      # Processes stop at the same step even when the signal reaches only some of them.
      signalled = sharding.any_process(stop.signal is not None)
      if signalled or (step - start_step == config.max_steps_per_run and step < total_steps):
        save(step, force=True)
        _checkpoint_io(ckpt.close)
        log.close()
        reason = (f'received signal {stop.signal}' if stop.signal is not None else
                  'another process received a signal' if signalled else
                  f'max_steps_per_run={config.max_steps_per_run} reached')
        print(f'Stopping early ({reason}): saved checkpoint at step {step}; run the same '
              'command again to resume.', flush=True)
        return {'interrupted_at_step': step}
    batches.close()
  if int(state['nonfinite']):
    save(step)
  call_hooks('final_eval', step)
  result = run_eval(step)
  _checkpoint_io(ckpt.close)
  log.close()
  summary = {
      'final': metrics_lib.scalar_metrics(result.metrics), 'best': best, 'step': step,
      'wall_time_s': round(time.time() - history_start, 1),
      'param_checksum': parameter_checksum(state['params']), 'num_params': int(n_params),
      'devices': jax.device_count(), 'processes': jax.process_count(),
  }
  if is_main:
    write_outputs(config, workdir, result, splits, summary)
  return summary


def write_outputs(config: ml_collections.ConfigDict, workdir: str, result: EvalResult,
                  splits: datasets.Splits, summary: dict[str, Any] | None = None) -> None:
  """summary.json, predictions CSV, submission files and PNG plots (process 0)."""
  probs = metrics_lib.softmax(result.logits)
  clip_ids = [splits.clip_id(splits.eval, i) for i in result.indices]
  metrics_lib.write_predictions_csv(os.path.join(workdir, 'predictions.csv'), clip_ids, probs,
                                    labels=result.labels)
  if config.data.name == 'imigue':
    metrics_lib.write_imigue_submission(os.path.join(workdir, 'Submission.csv'), clip_ids, probs)
  if config.data.name == 'ma52':
    metrics_lib.write_ma52_submission(os.path.join(workdir, 'prediction.csv'), clip_ids, probs)
  num_clips, mirror = test_time_views(config)
  np.savez_compressed(os.path.join(workdir, 'eval_outputs.npz'), logits=result.logits,
                      routing_weights=result.routing_weights, labels=result.labels,
                      clip_ids=np.asarray(clip_ids, dtype=str), eval_split=config.data.eval_split,
                      test_time_clips=num_clips, test_time_flip=mirror)
  with open(os.path.join(workdir, 'eval_metrics.json'), 'w') as f:
    json.dump(metrics_lib.scalar_metrics(result.metrics), f, indent=2)
  if summary is not None:
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
      json.dump(summary, f, indent=2)
    print(metrics_lib.format_metrics_table(result.metrics, title='Final evaluation'))
    print(f'summary: {os.path.join(workdir, "summary.json")}', flush=True)
  entity_names = list(model_config(config).entity_names)
  try:
    if os.path.exists(os.path.join(workdir, 'metrics.jsonl')):
      report.plot_training_curves(os.path.join(workdir, 'metrics.jsonl'),
                                  os.path.join(workdir, 'training_curves.png'))
    report.plot_confusion_matrix(result.metrics['confusion_matrix'], splits.class_names,
                                 os.path.join(workdir, 'confusion_matrix.png'))
    report.plot_routing_weights(result.routing_weights, entity_names,
                                os.path.join(workdir, 'routing_weights.png'),
                                class_names=splits.class_names, labels=result.labels)
  except ValueError as error:   # a plot must never cost the run its results
    logging.warning('plotting failed: %s', error)


def restore_workdir(config: ml_collections.ConfigDict, workdir: str, mesh: jax.sharding.Mesh,
                    use_best: bool = True) -> tuple[nnx.GraphDef, TrainState, int]:
  """(graphdef, state, step) of the best (else the latest) checkpoint of `workdir`.

  Refuses a work directory whose config.json names another model or loss: a setting that leaves
  the parameter shapes alone (e.g. velocity_scale) would otherwise restore and silently compute
  something else."""
  _check_same_model(workdir, config)
  tx, _ = make_optimizer(config, 1)
  graphdef, state = create_train_state(config, tx, mesh)
  ckpt = Checkpointer(workdir, keep=config.keep_checkpoints, best_metric=config.best_metric,
                      async_save=False)
  try:
    restored = (ckpt.restore(abstract_like(state), best=True) if use_best else None) or \
        ckpt.restore(abstract_like(state))
  finally:
    ckpt.close()
  if restored is None:
    raise TrainingError(f'no checkpoint in {workdir!r}; train first with --mode=train')
  step, state, _ = restored
  return graphdef, state, step


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str, use_best: bool = True,
                     output_dir: str | None = None) -> dict[str, Any]:
  """--mode=eval: restores the best (else latest) checkpoint, evaluates, writes outputs.

  The outputs (eval_outputs.npz, predictions, plots) go to `output_dir` when given, so that
  evaluating a finished run another way (e.g. with test-time augmentation) keeps its own
  results; else to `workdir`."""
  test_time_views(config)   # a bad setting fails before the restore
  sharding.maybe_initialize_distributed()
  mesh = sharding.make_mesh()
  graphdef, state, step = restore_workdir(config, workdir, mesh, use_best)  # refuses first
  splits = datasets.load_splits(config)
  eval_loader = datasets.make_loader(config, splits.eval, config.eval_batch_size, 'eval')
  result = evaluate(make_eval_step(graphdef, config, mesh), state, eval_loader, mesh,
                    config.model.num_classes, ma52=config.data.name == 'ma52')
  if jax.process_index() == 0:
    if output_dir:
      os.makedirs(output_dir, exist_ok=True)
    write_outputs(config, output_dir or workdir, result, splits)
    print(metrics_lib.format_metrics_table(result.metrics, title=f'Evaluation (step {step})'))
  return {'step': step, **metrics_lib.scalar_metrics(result.metrics)}
