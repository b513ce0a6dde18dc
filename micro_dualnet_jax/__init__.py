"""Micro-DualNet in JAX/Flax: dual-path spatio-temporal skeleton micro-action recognition.

    from micro_dualnet_jax import MicroDualNet, ModelConfig
    model = MicroDualNet(ModelConfig(layout='openpose22', num_classes=32), rngs=nnx.Rngs(0))

    from micro_dualnet_jax import Predictor            # a trained work directory
    predictor = Predictor.from_workdir('runs/imigue')

The names below load on first use, so `import micro_dualnet_jax.malloc_tuning`, the data readers or
the configuration (`micro_dualnet_jax.config`) do not pull in jax. docs/api.md describes each
of them.
"""

import importlib

__version__ = '0.2.0'

_EXPORTS = {
    # the model and its pieces
    'MicroDualNet': 'models', 'MicroDualNetLinen': 'models', 'ModelConfig': 'config', 'apply': 'models', 'init': 'models',
    'EntityEmbedding': 'models', 'GlobalToken': 'models', 'DualPathBranch': 'models',
    'TransformerStack': 'models', 'Attention': 'models', 'Dropout': 'models',
    'EntityRouter': 'models', 'StaticRouter': 'models', 'MeanFusion': 'models',
    'make_fusion': 'models', 'PerEntityLinear': 'models',
    # losses
    'LossConfig': 'config', 'cross_entropy': 'losses', 'mac_infonce': 'losses',
    'total_loss': 'losses',
    # layouts
    'Layout': 'skeleton', 'get_layout': 'skeleton', 'layout_names': 'skeleton',
    'register_layout': 'skeleton', 'unregister_layout': 'skeleton',
    # input pipeline
    'AugmentConfig': 'config', 'train_inputs': 'pipeline.augment',
    'eval_inputs': 'pipeline.augment', 'pad_clips': 'pipeline.loader', 'Clip': 'data.clip',
    # training pieces for an own loop
    'OptimConfig': 'config', 'make_optimizer': 'steps', 'make_train_step': 'steps',
    'make_eval_step': 'steps',
    # the run configuration
    'RunConfig': 'config', 'DataConfig': 'config', 'TestTimeConfig': 'config',
    # a trained run
    'Predictor': 'inference', 'restore_model': 'inference', 'RunDir': 'rundir',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  if name in _EXPORTS:
    value = getattr(importlib.import_module(f'{__name__}.{_EXPORTS[name]}'), name)
    globals()[name] = value
    return value
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return sorted([*globals(), *__all__])
