"""What training runs with: the loss, the optimizer and the run-level settings (no JAX)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from micro_dualnet_jax.config import checks as check
from micro_dualnet_jax.config.dicts import dataclass_kwargs
from micro_dualnet_jax.errors import ConfigError

BEST_METRICS = ('top1', 'top5', 'f1_macro', 'f1_micro', 'mean_class_accuracy', 'f1_mean',
                'body_top1')


MAC_KINDS = ('infonce', 'kl', 'none')


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """label_smoothing: CE smoothing; mac: 'infonce' | 'kl' | 'none'; mac_weight: lambda;
  mac_temperature: InfoNCE temperature; router_entropy_weight: beta, the weight of the routing
  weights' mean entropy, subtracted from the loss (0: off; > 0 keeps the router from settling on
  one path per entity early)."""
  label_smoothing: float = 0.1
  mac: str = 'infonce'
  mac_weight: float = 0.1
  mac_temperature: float = 0.1
  router_entropy_weight: float = 0.0

  def __post_init__(self):
    with check.section('loss config'):
      check.number_in('label_smoothing', self.label_smoothing, 0.0, 1.0, high_open=True)
      check.one_of('mac', self.mac, MAC_KINDS)
      check.non_negative('mac_weight', self.mac_weight)
      check.positive('mac_temperature', self.mac_temperature)
      check.non_negative('router_entropy_weight', self.router_entropy_weight)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> 'LossConfig':
    return cls(**dataclass_kwargs(cls, values, 'loss config keys'))


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
class RunSettings:
  """The top-level values of a run config, checked (configs/default.py has their meaning).

  steps_per_call: optimizer steps per jitted call (`steps.make_train_loop`); 0: as many as take
    about a second on the machine at hand. Evaluations, checkpoints and max_steps_per_run end a
    call; logs are per step whatever it is.
  compilation_cache_dir: JAX's persistent compilation cache ('': off), so that a rerun, a
    resume, eval, predict and export of a run do not compile again what was compiled before.
  """
  seed: int = 0
  num_seeds: int = 1
  batch_size: int = 64
  eval_batch_size: int = 128
  num_epochs: float = 100
  num_train_steps: int = 0
  max_steps_per_run: int = 0
  log_every_steps: int = 50
  eval_every_steps: int = 1000
  checkpoint_every_steps: int = 1000
  keep_checkpoints: int = 3
  async_checkpoints: bool = True
  best_metric: str = 'top1'
  steps_per_call: int = 0
  compilation_cache_dir: str = '~/.cache/micro_dualnet_jax/jax'

  def __post_init__(self):
    with check.section('run config'):
      check.integer('seed', self.seed, minimum=0)
      check.positive_int('num_seeds', self.num_seeds)
      check.positive_int('batch_size', self.batch_size)
      check.positive_int('eval_batch_size', self.eval_batch_size)
      check.non_negative('num_epochs', self.num_epochs)
      check.integer('num_train_steps', self.num_train_steps, minimum=0)
      if not self.num_train_steps and not self.num_epochs:
        raise ConfigError('num_epochs and num_train_steps are both 0: nothing to train')
      check.integer('max_steps_per_run', self.max_steps_per_run, minimum=0)
      check.positive_int('log_every_steps', self.log_every_steps)
      check.integer('eval_every_steps', self.eval_every_steps, minimum=0)
      check.positive_int('checkpoint_every_steps', self.checkpoint_every_steps)
      check.positive_int('keep_checkpoints', self.keep_checkpoints)
      check.boolean('async_checkpoints', self.async_checkpoints)
      check.one_of('best_metric', self.best_metric, BEST_METRICS)
      check.integer('steps_per_call', self.steps_per_call, minimum=0)
      if not isinstance(self.compilation_cache_dir, str):
        raise ConfigError(f'compilation_cache_dir must be a folder or \'\' (off), got '
                          f'{self.compilation_cache_dir!r}')

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> RunSettings:
    return cls(**dataclass_kwargs(cls, values, 'run settings'))

  @property
  def seeds(self) -> list[int]:
    return list(range(self.seed, self.seed + self.num_seeds))
