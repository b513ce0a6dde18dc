"""Micro-DualNet model: shapes, invariances, routing, path switches, gradients, interop."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx
from flax.nnx import bridge

from micro_dualnet_jax import (Dropout, DualPathBranch, EntityEmbedding, EntityRouter,
                               LossConfig, MicroDualNet, MicroDualNetLinen, ModelConfig, apply,
                               get_layout, init, layout_names, total_loss)
from micro_dualnet_jax.models.transformer import Attention, TransformerStack, dropout_keep_mask

TINY = dict(width=32, num_heads=4, spatial_layers=1, temporal_layers=1, mlp_ratio=2,
            num_frames=24, num_classes=7, dropout=0.1)


def tiny_config(**overrides) -> ModelConfig:
  return ModelConfig(**{**TINY, **overrides})


def random_inputs(config: ModelConfig, batch=3, frames=12, seed=0, confidence=True):
  layout = get_layout(config.layout)
  rng = np.random.default_rng(seed)
  channels = layout.coord_dims + (1 if confidence else 0)
  keypoints = rng.normal(size=(batch, frames, layout.num_joints, channels)).astype(np.float32)
  if confidence:
    conf = rng.uniform(0.2, 1.0, size=keypoints.shape[:3])
    conf[rng.uniform(size=conf.shape) < 0.1] = 0.0        # some missing joints
    keypoints[..., -1] = conf
  frame_mask = np.ones((batch, frames), np.float32)
  return jnp.asarray(keypoints), jnp.asarray(frame_mask)


def build(config: ModelConfig, seed=0, train=False) -> MicroDualNet:
  """The model in evaluation mode (deterministic), or in training mode with train=True."""
  model = MicroDualNet(config, rngs=nnx.Rngs(seed))
  if not train:
    model.eval()
  return model


@pytest.mark.parametrize('layout', sorted(layout_names()))
def test_output_shapes_for_every_layout(layout):
  config = tiny_config(layout=layout)
  model = build(config)
  keypoints, mask = random_inputs(config)
  logits, aux = model(keypoints, mask)
  k = get_layout(layout).num_entities
  assert logits.shape == (3, 7) and logits.dtype == jnp.float32
  assert aux['routing_weights'].shape == (3, k, 2)
  assert aux['pooled_st'].shape == aux['pooled_ts'].shape == (3, k, 32)
  assert aux['mac_st'].shape == aux['mac_ts'].shape == (3, k, 16)
  assert aux['global_token'].shape == (3, 32)
  assert np.all(np.isfinite(logits))


@pytest.mark.parametrize('layout,entities,k', [
    ('openpose22', None, 5), ('openpose28', None, 6), ('kinect20', None, 6),
    ('openpose28', ('face', 'head', 'torso', 'left_hand', 'right_hand'), 5)])
def test_entity_count(layout, entities, k):
  config = tiny_config(layout=layout, entities=entities)
  assert config.num_entities == k
  logits, aux = build(config)(*random_inputs(config))
  assert aux['routing_weights'].shape == (3, k, 2)


def test_inputs_without_confidence_channel():
  config = tiny_config(layout='kinect20')
  logits, _ = build(config)(*random_inputs(config, confidence=False))
  assert logits.shape == (3, 7)
  with pytest.raises(ValueError, match='channels'):
    build(config)(jnp.zeros((1, 4, 20, 7)), jnp.ones((1, 4)))


def test_padding_invariance():
  """Appending masked frames leaves logits and routing weights unchanged."""
  config = tiny_config(fusion='routing')
  model = build(config)
  # Give the router non-zero output weights so the weights depend on the input.
  model.fusion.logits.kernel[...] = jax.random.normal(jax.random.key(1),
                                                      model.fusion.logits.kernel.shape)
  keypoints, mask = random_inputs(config, frames=12)
  logits, aux = model(keypoints, mask)
  garbage = jax.random.normal(jax.random.key(2), (3, 8, *keypoints.shape[2:])) * 100
  padded = jnp.concatenate([keypoints, garbage], axis=1)
  padded_mask = jnp.concatenate([mask, jnp.zeros((3, 8))], axis=1)
  logits_p, aux_p = nnx.jit(lambda m, x, f: m(x, f))(model, padded, padded_mask)  # one compile
  np.testing.assert_allclose(logits_p, logits, atol=2e-5, rtol=1e-5)
  np.testing.assert_allclose(aux_p['routing_weights'], aux['routing_weights'], atol=1e-6)
  assert not np.allclose(aux['routing_weights'][..., 0], 0.5)


def test_batch_equivariance():
  config = tiny_config()
  model = build(config)
  keypoints, mask = random_inputs(config)      # the batch of 3 of the other tests: no new shapes
  perm = np.array([2, 0, 1])
  logits, aux = model(keypoints, mask)
  logits_p, aux_p = model(keypoints[perm], mask[perm])
  np.testing.assert_allclose(logits_p, logits[perm], atol=1e-5)
  for key in aux:
    np.testing.assert_allclose(aux_p[key], aux[key][perm], atol=1e-5)


def test_routing_starts_at_half_and_sums_to_one():
  config = tiny_config(fusion='routing')
  model = build(config)
  _, aux = model(*random_inputs(config))
  np.testing.assert_array_equal(aux['routing_weights'], 0.5)
  model.fusion.logits.kernel[...] = jnp.ones_like(model.fusion.logits.kernel[...]) * 0.3
  model.fusion.logits.bias[...] = jnp.array([[0.5, -0.5]] * config.num_entities)
  _, aux = model(*random_inputs(config))
  weights = np.asarray(aux['routing_weights'])
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
  assert weights.min() > 0 and not np.allclose(weights, 0.5)


def test_static_weights_do_not_depend_on_input():
  config = tiny_config(fusion='static')
  model = build(config)
  model.fusion.logits[...] = jnp.arange(10.0).reshape(5, 2) / 7
  _, aux_a = model(*random_inputs(config, seed=1))
  _, aux_b = model(*random_inputs(config, seed=2))
  np.testing.assert_array_equal(aux_a['routing_weights'], aux_b['routing_weights'])
  np.testing.assert_allclose(aux_a['routing_weights'][0], jax.nn.softmax(
      jnp.arange(10.0).reshape(5, 2) / 7, axis=-1), rtol=1e-6)


def test_mean_fusion_is_half():
  config = tiny_config(fusion='mean')
  model = build(config)
  assert not nnx.state(model.fusion, nnx.Param)
  _, aux = model(*random_inputs(config))
  np.testing.assert_array_equal(aux['routing_weights'], 0.5)


@pytest.mark.parametrize('paths,own,other', [('st', 'st_path', 'ts_path'),
                                             ('ts', 'ts_path', 'st_path')])
def test_single_path_holds_no_other_path(paths, own, other):
  config = tiny_config(paths=paths, mac_projection=False)
  model = build(config)
  assert getattr(model, other) is None and model.fusion is None
  names = {'/'.join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  assert any(n.startswith(own) for n in names)
  assert not any(n.startswith(other) or n.startswith('fusion') for n in names)
  dual = build(tiny_config())
  count = lambda m: sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param)))
  assert count(model) < count(dual)
  logits, aux = model(*random_inputs(config))
  assert f'pooled_{paths}' in aux and len([k for k in aux if k.startswith('pooled')]) == 1
  expected = [1.0, 0.0] if paths == 'st' else [0.0, 1.0]
  np.testing.assert_array_equal(aux['routing_weights'], np.broadcast_to(expected, (3, 5, 2)))


def test_config_errors_name_the_value():
  with pytest.raises(ValueError, match="mac_projection=True needs both paths, got paths='st'"):
    ModelConfig(paths='st')
  with pytest.raises(ValueError, match='fusion'):
    ModelConfig(fusion='attention')
  with pytest.raises(ValueError, match='unknown joint layout'):
    ModelConfig(layout='openpose99')
  with pytest.raises(ValueError, match=r'width \(30\) must be divisible by num_heads \(4\)'):
    ModelConfig(width=30, num_heads=4)
  with pytest.raises(ValueError, match=r"unknown model config keys \['widht'\]"):
    ModelConfig.from_dict({'widht': 3})
  with pytest.raises(ValueError, match='lower_body'):
    ModelConfig(layout='openpose22', entities=('face', 'lower_body'))
  with pytest.raises(ValueError, match='velocity_scale must be a number > 0, got 0'):
    ModelConfig(velocity_scale=0)
  config = tiny_config()
  with pytest.raises(ValueError, match='at most 24'):
    build(config)(*random_inputs(config, frames=30))


def test_joint_features_are_the_named_parts_in_order():
  layout = get_layout('kinect20')
  rng = np.random.default_rng(0)
  keypoints = jnp.asarray(np.concatenate([rng.normal(size=(2, 5, 20, 3)),
                                          np.ones((2, 5, 20, 1))], -1).astype(np.float32))
  mask = jnp.ones((2, 5))
  def feats(names):
    embedding = EntityEmbedding(layout, None, 16, 8, joint_features=names, rngs=nnx.Rngs(0))
    return np.asarray(embedding.joint_features(keypoints, mask))
  index = np.array(get_layout('kinect20').entity_index_table()[0])
  mask_j = np.array(get_layout('kinect20').entity_index_table()[1])
  position = feats(('position',)).reshape(2, 5, 6, index.shape[1], 3)
  np.testing.assert_allclose(position, np.asarray(keypoints)[..., :3][:, :, index]
                             * mask_j[None, None, :, :, None], atol=1e-6)
  both = feats(('position', 'confidence')).reshape(2, 5, 6, index.shape[1], 4)
  np.testing.assert_allclose(both[..., :3], position, atol=1e-6)
  np.testing.assert_allclose(both[..., 3], mask_j[None, None].repeat(2, 0).repeat(5, 1))
  default = feats(('center', 'root', 'velocity', 'confidence'))
  assert default.shape[-1] == index.shape[1] * 10
  with pytest.raises(ValueError, match='joint_features must be distinct names'):
    ModelConfig(joint_features=('position', 'speed'))


@pytest.mark.parametrize('scale', [1.0, 10.0])
def test_velocity_features_are_scaled_frame_differences(scale):
  layout = get_layout('openpose22')
  embedding = EntityEmbedding(layout, layout.entity_names, 16, 4, velocity_scale=scale,
                              rngs=nnx.Rngs(0))
  keypoints = np.zeros((1, 4, layout.num_joints, 3), np.float32)
  keypoints[..., 2] = 1.0                               # every joint visible
  keypoints[0, :, 4, 0] = [0.0, 0.5, 0.25, 0.25]        # right wrist moves along x
  keypoints[0, 2, 4, 2] = 0.0                           # ... and is missing in frame 2
  feats = np.asarray(embedding.joint_features(jnp.asarray(keypoints), jnp.ones((1, 4))))
  index = np.array(embedding.entity_index)
  k, j = map(int, np.argwhere(index == 4)[0])           # the wrist's entity and slot
  c = layout.coord_dims
  per_joint = feats[0, :, k].reshape(4, index.shape[1], 3 * c + 1)[:, j]
  # dx is 0 at the first frame and wherever either end of the difference is missing.
  np.testing.assert_allclose(per_joint[:, 2 * c], scale * np.array([0.0, 0.5, 0.0, 0.0]))
  np.testing.assert_allclose(per_joint[:, 2 * c + 1], 0.0)


@nnx.jit
def _grads(model, keypoints, mask, labels):
  def loss_fn(model):
    logits, aux = model(keypoints, mask)
    return total_loss(logits, aux, labels, LossConfig())[0]
  return nnx.grad(loss_fn)(model)


def test_every_parameter_gets_a_gradient():
  """Finite everywhere; non-zero for every parameter array once the zero-initialised router
  output layer has taken one optimizer step (at step 0 it blocks the router's hidden layer)."""
  config = tiny_config(num_frames=12)
  model = build(config, train=True)
  keypoints, mask = random_inputs(config, batch=4)
  labels = jnp.array([0, 1, 2, 3])
  grads = _grads(model, keypoints, mask, labels)
  flat = {'/'.join(map(str, p)): np.asarray(v) for p, v in nnx.to_flat_state(grads)}
  assert all(np.all(np.isfinite(g)) for g in flat.values())
  blocked = {n for n, g in flat.items() if not np.any(g)}
  assert blocked == {'fusion/hidden/kernel/value', 'fusion/hidden/bias/value'} or blocked == {
      'fusion/hidden/kernel', 'fusion/hidden/bias'}, blocked
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
  nnx.jit(lambda optimizer, model, grads: optimizer.update(model, grads))(optimizer, model, grads)
  grads = _grads(model, keypoints, mask, labels)
  for name, g in nnx.to_flat_state(grads):
    assert np.all(np.isfinite(g)) and np.any(np.asarray(g)), name


def test_jit_and_functional_api_match_module():
  config = tiny_config()
  graphdef, state = init(jax.random.key(0), config)
  keypoints, mask = random_inputs(config)
  jitted = jax.jit(apply, static_argnums=0, static_argnames='train')
  logits, aux = jitted(graphdef, state, keypoints, mask)
  model = build(config)
  model = MicroDualNet(config, rngs=nnx.Rngs(jax.random.key(0)))
  model.eval()
  logits_m, _ = model(keypoints, mask)
  np.testing.assert_allclose(logits, logits_m, atol=1e-5)
  # Training: a key makes dropout stochastic, the same key reproducible; apply stays pure.
  a, _ = jitted(graphdef, state, keypoints, mask, train=True, dropout_rng=jax.random.key(1))
  b, _ = jitted(graphdef, state, keypoints, mask, train=True, dropout_rng=jax.random.key(1))
  c, _ = jitted(graphdef, state, keypoints, mask, train=True, dropout_rng=jax.random.key(2))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c) and not np.allclose(a, logits)
  with pytest.raises(ValueError, match='dropout_rng'):
    apply(graphdef, state, keypoints, mask, train=True)
  graphdef2, state2 = init(jax.random.key(0), dict(TINY))  # a plain dict works too
  assert jax.tree.structure(state2) == jax.tree.structure(state)


def test_bfloat16_compute_keeps_float32_params_and_outputs():
  config = tiny_config(dtype='bfloat16')
  model = build(config)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  logits, aux = model(*random_inputs(config))
  logits32, _ = build(tiny_config())(*random_inputs(config))
  assert logits.dtype == jnp.float32
  # bf16 keeps 8 mantissa bits: over 5 seeds the logits (|l| < 2) moved by 0.004-0.006. The
  # bound is ~3x that; a difference of 0 would mean the bf16 path is not taken.
  difference = np.max(np.abs(np.asarray(logits) - np.asarray(logits32)))
  assert 1e-4 < difference < 0.02, difference


def test_linen_bridge_recipe_from_readme():
  """Plain nnx.bridge.ToLinen inside a user's Linen module: same parameters, evaluation mode."""
  config = tiny_config()

  class LinenClassifier(linen.Module):
    @linen.compact
    def __call__(self, keypoints, frame_mask):
      logits, aux = bridge.ToLinen(MicroDualNet, args=(config,), skip_rng=False)(
          keypoints, frame_mask, deterministic=True)
      return logits, aux['routing_weights']

  keypoints, mask = random_inputs(config)
  variables = LinenClassifier().init(jax.random.key(0), keypoints, mask)
  logits, weights = jax.jit(LinenClassifier().apply)(variables, keypoints, mask)
  assert logits.shape == (3, 7) and weights.shape == (3, 5, 2)
  n_params = sum(x.size for x in jax.tree.leaves(variables['params']))
  assert n_params == sum(x.size for x in jax.tree.leaves(nnx.state(build(config), nnx.Param)))


def test_dropout_follows_train_and_eval_in_nnx():
  config = tiny_config(dropout=0.3)
  model = build(config, train=True)
  keypoints, mask = random_inputs(config)
  a, _ = model(keypoints, mask)
  b, _ = model(keypoints, mask)            # the held streams advance: a new mask
  assert not np.allclose(a, b)
  reference, _ = model(keypoints, mask, deterministic=True)
  model.eval()
  c, _ = model(keypoints, mask)
  d, _ = model(keypoints, mask)
  np.testing.assert_array_equal(c, d)
  np.testing.assert_array_equal(c, reference)
  model.train()
  e, _ = model(keypoints, mask)
  assert not np.allclose(e, c)
  view, _ = nnx.view(model, deterministic=True)(keypoints, mask)
  np.testing.assert_array_equal(view, reference)
  # Built without any dropout stream: evaluation works, training says what is missing.
  bare = MicroDualNet(config, rngs=nnx.Rngs(params=0))
  with pytest.raises(ValueError, match='without a dropout RNG stream'):
    bare(keypoints, mask)
  bare.eval()
  assert np.all(np.isfinite(bare(keypoints, mask)[0]))


def test_dropout_follows_train_and_eval_through_the_linen_bridge():
  config = tiny_config(dropout=0.3)
  model = MicroDualNetLinen(config)
  keypoints, mask = random_inputs(config)
  variables = model.init(jax.random.key(0), keypoints, mask)
  apply_fn = jax.jit(model.apply, static_argnames='train')
  evaluated, _ = apply_fn(variables, keypoints, mask)
  again, _ = apply_fn(variables, keypoints, mask)
  np.testing.assert_array_equal(evaluated, again)
  a, _ = apply_fn(variables, keypoints, mask, train=True, rngs={'dropout': jax.random.key(1)})
  b, _ = apply_fn(variables, keypoints, mask, train=True, rngs={'dropout': jax.random.key(1)})
  c, _ = apply_fn(variables, keypoints, mask, train=True, rngs={'dropout': jax.random.key(2)})
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c) and not np.allclose(a, evaluated)
  with pytest.raises(ValueError, match="needs a 'dropout' RNG"):
    model.apply(variables, keypoints, mask, train=True)
  # The same parameters as the NNX model, and in evaluation mode the same outputs.
  nnx_model = build(config)
  nnx.update(nnx_model, nnx.State(variables['params']['model']))
  np.testing.assert_allclose(nnx_model(keypoints, mask)[0], evaluated, atol=1e-6)


def test_frame_mask_is_optional_and_a_single_clip_needs_no_batch_axis():
  config = tiny_config()
  model = build(config)
  keypoints, mask = random_inputs(config)
  logits, aux = model(keypoints, mask)
  np.testing.assert_array_equal(model(keypoints)[0], logits)     # mask of ones
  single, single_aux = nnx.jit(lambda m, x: m(x))(model, keypoints[1])  # one compile
  np.testing.assert_allclose(single, logits[1], atol=1e-6)
  assert single_aux['routing_weights'].shape == (5, 2)


def test_a_nan_coordinate_with_zero_confidence_is_ignored():
  config = tiny_config()
  model = build(config)
  keypoints, mask = random_inputs(config)
  keypoints = np.array(keypoints)
  keypoints[0, 3, 5, -1] = 0.0                  # joint 5 missing in frame 3 ...
  zeroed = keypoints.copy()
  zeroed[0, 3, 5, :-1] = 0.0
  keypoints[0, 3, 5, :-1] = np.nan              # ... with NaN coordinates
  logits, aux = model(jnp.asarray(keypoints), mask)
  expected, expected_aux = model(jnp.asarray(zeroed), mask)
  assert np.all(np.isfinite(logits))
  np.testing.assert_array_equal(logits, expected)
  np.testing.assert_array_equal(aux['routing_weights'], expected_aux['routing_weights'])
  # A NaN confidence counts as missing too.
  keypoints[0, 3, 5, -1] = np.nan
  np.testing.assert_array_equal(model(jnp.asarray(keypoints), mask)[0], expected)


def test_zero_frames_is_a_clear_error():
  config = tiny_config()
  with pytest.raises(ValueError, match='T = 0 frames'):
    build(config)(jnp.zeros((2, 0, 22, 3)), jnp.zeros((2, 0)))


@pytest.mark.parametrize('changes, message', [
    (dict(width=0), 'width must be a positive integer, got 0'),
    (dict(width=-3), 'width must be a positive integer, got -3'),
    (dict(width=2.5), 'width must be a positive integer, got 2.5'),
    (dict(width=31, num_heads=1), 'width must be even, got 31'),
    (dict(num_heads=0), 'num_heads must be a positive integer, got 0'),
    (dict(num_heads=-1), 'num_heads must be a positive integer, got -1'),
    (dict(num_heads=3), r'width \(256\) must be divisible by num_heads \(3\)'),
    (dict(mlp_ratio=0), 'mlp_ratio must be a positive integer, got 0'),
    (dict(num_classes=2.5), 'num_classes must be an integer >= 2, got 2.5'),
    (dict(num_classes=1), 'num_classes must be an integer >= 2, got 1'),
    (dict(num_classes=True), 'num_classes must be an integer >= 2, got True'),
    (dict(num_frames=0), 'num_frames must be a positive integer, got 0'),
    (dict(spatial_layers=0), 'spatial_layers must be a positive integer, got 0'),
    (dict(temporal_layers=-2), 'temporal_layers must be a positive integer, got -2'),
    (dict(dropout=1.0), r'dropout must be a number in \[0, 1\), got 1.0'),
    (dict(dropout=-0.1), r'dropout must be a number in \[0, 1\), got -0.1'),
    (dict(router_temperature=0), 'router_temperature must be a number > 0, got 0'),
    (dict(velocity_scale=-1.0), 'velocity_scale must be a number > 0, got -1.0'),
    (dict(paths='both'), "paths must be one of \\('dual', 'st', 'ts'\\), got 'both'"),
    (dict(fusion='attention'), "fusion must be one of .*, got 'attention'"),
    (dict(dtype='float16'), "dtype must be one of .*, got 'float16'"),
    (dict(global_token='yes'), "global_token must be True or False, got 'yes'"),
    (dict(entities=()), 'entities must name at least one entity'),
    (dict(entities='face'), "entities must be a sequence of entity names, got 'face'"),
    (dict(paths='ts'), "mac_projection=True needs both paths, got paths='ts': set "
                       "mac_projection=False"),
])
def test_each_invalid_model_config_value_is_named(changes, message):
  with pytest.raises(ValueError, match='invalid model config: ' + message):
    ModelConfig(**changes)


def test_sub_modules_take_layout_names_and_a_few_numbers():
  keypoints, mask = random_inputs(tiny_config())
  embedding = EntityEmbedding('openpose22', None, 32, 24, rngs=nnx.Rngs(0))
  tokens = embedding(keypoints, mask)
  assert tokens.shape == (3, 12, 5, 32)
  for axis in ('spatial', 'entity', 'temporal', 'time'):
    branch = DualPathBranch(32, 4, first_axis=axis, spatial_layers=1, temporal_layers=1,
                            rngs=nnx.Rngs(0))
    assert branch(tokens, mask, deterministic=True).shape == tokens.shape
  with pytest.raises(ValueError, match="first_axis must be one of .*, got 'diagonal'"):
    DualPathBranch(32, 4, first_axis='diagonal', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'width \(30\) must be divisible by num_heads \(4\)'):
    DualPathBranch(30, 4, first_axis='spatial', rngs=nnx.Rngs(0))
  router = EntityRouter(5, 32, rngs=nnx.Rngs(0))
  weights = router(tokens.mean(1), tokens.mean(1))
  np.testing.assert_allclose(weights, 0.5)
  with pytest.raises(ValueError, match='temperature must be a number > 0, got 0'):
    EntityRouter(5, 32, temperature=0, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='unknown joint layout'):
    EntityEmbedding('openpose99', None, 32, 24, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='rate must be a number in'):
    Dropout(1.5)


def test_default_model_parameter_count():
  """The README states this number; keep them in sync."""
  model = nnx.eval_shape(lambda: MicroDualNet(ModelConfig(), rngs=nnx.Rngs(0)))
  count = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert count == 10_802_730


# ----------------------------------------------------------------------------- values by hand


def _pass_through_attention(axis: str) -> Attention:
  """Width 4, 2 heads of 2 channels; q = k = v = the token and the output projection is the
  identity, so the result is the attention-weighted mean of the tokens, head by head."""
  attention = Attention(4, 2, axis, rngs=nnx.Rngs(0))
  eye = jnp.eye(4)
  attention.qkv.kernel[...] = jnp.concatenate([eye, eye, eye], axis=1)
  attention.qkv.bias[...] = jnp.zeros(12)
  attention.out.kernel[...] = eye
  attention.out.bias[...] = jnp.zeros(4)
  return attention


def _softmax(scores):
  weights = [math.exp(s) for s in scores]
  return [w / sum(weights) for w in weights]


# Two tokens; head 0 sees channels 0-1, head 1 channels 2-3.
_TOKEN_1, _TOKEN_2 = [1.0, 0.0, 2.0, 0.0], [0.0, 1.0, 1.0, -1.0]


def _two_token_attention_by_hand() -> np.ndarray:
  """softmax(q k^T / sqrt(head width)) v for the two tokens, head by head: (2 tokens, 4)."""
  tokens = [np.array(_TOKEN_1), np.array(_TOKEN_2)]
  out = np.zeros((2, 4))
  for head in (0, 1):
    part = slice(2 * head, 2 * head + 2)
    for query in (0, 1):
      scores = [float(tokens[query][part] @ tokens[key][part]) / math.sqrt(2) for key in (0, 1)]
      weights = _softmax(scores)
      out[query, part] = weights[0] * tokens[0][part] + weights[1] * tokens[1][part]
  return out


def test_attention_of_two_tokens_equals_the_softmax_by_hand():
  # Head 0, token 1: scores (1, 0) / sqrt(2), so weights (e^0.707, 1) / (e^0.707 + 1); a scale
  # of 1 / sqrt(width) = 1/2 instead of 1 / sqrt(width / heads) gives other weights.
  expected = _two_token_attention_by_hand()
  tokens = jnp.array([_TOKEN_1, _TOKEN_2])
  ones = jnp.ones((1, 1))
  spatial = _pass_through_attention('entity')(tokens[None, None], ones)          # (1, 1, K=2, D)
  np.testing.assert_allclose(spatial[0, 0], expected, rtol=1e-5, atol=1e-6)
  temporal = _pass_through_attention('time')(tokens[None, :, None], jnp.ones((1, 2)))  # T = 2
  np.testing.assert_allclose(temporal[0, :, 0], expected, rtol=1e-5, atol=1e-6)
  # A padded frame is no key: both frames then read frame 0 alone.
  padded = _pass_through_attention('time')(tokens[None, :, None], jnp.array([[1.0, 0.0]]))
  np.testing.assert_allclose(padded[0, :, 0], [_TOKEN_1, _TOKEN_1], rtol=1e-6, atol=1e-6)


def _stack_along(axis: str, trained: TransformerStack, config: ModelConfig) -> TransformerStack:
  """A new stack attending along `axis` that holds the weights of `trained`."""
  stack = TransformerStack(config.width, config.num_heads, config.mlp_ratio, len(trained.layers),
                           axis, rngs=nnx.Rngs(99))
  nnx.update(stack, nnx.state(trained))
  stack.eval()
  return stack


def test_each_path_is_its_two_stacks_composed_in_its_own_order():
  """ST = Temporal(Spatial(X) + MLP(X)), TS = Spatial(Temporal(X) + MLP(X)) (docs/method.md),
  rebuilt from the paths' own weights; different layer counts per kind make the order visible in
  the parameters too."""
  config = tiny_config(spatial_layers=2, temporal_layers=1, dropout=0.0)
  model = build(config)
  keypoints, mask = random_inputs(config, batch=2, frames=6)
  order = {'st': ('entity', 'time'), 'ts': ('time', 'entity')}
  rebuilt = {name: (_stack_along(first, getattr(model, f'{name}_path').first, config),
                    _stack_along(second, getattr(model, f'{name}_path').second, config))
             for name, (first, second) in order.items()}

  @nnx.jit
  def paths_and_references(model, rebuilt, keypoints, mask):
    x = model.embedding(keypoints, mask)
    _, aux = model(keypoints, mask)
    out = {}
    for name, (first, second) in rebuilt.items():
      path = getattr(model, f'{name}_path')
      out[name] = (path(x, mask), second(first(x, mask) + path.reinject(x), mask),
                   aux[f'pooled_{name}'])
    return out

  for name, (got, expected, pooled) in paths_and_references(model, rebuilt, keypoints,
                                                            mask).items():
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(pooled, expected.mean(axis=1), rtol=1e-5, atol=1e-5,
                               err_msg=name)
  assert len(model.st_path.first.layers) == len(model.ts_path.second.layers) == 2


@pytest.mark.parametrize('rate', [0.1, 0.3])
def test_dropout_keeps_one_minus_rate_of_the_elements_scaled_up(rate):
  """Measured over a million draws (std of the kept fraction 0.0005): a mask that keeps `rate`
  instead of 1 - rate is off by 0.4 or more."""
  for seed in (0, 1):
    keep = np.asarray(dropout_keep_mask(jax.random.key(seed), (1000, 1000), rate))
    assert abs(keep.mean() - (1.0 - rate)) < 0.003, keep.mean()
    assert abs(keep[:500].mean() - keep[500:].mean()) < 0.006
  layer = Dropout(rate, rngs=nnx.Rngs(dropout=0))
  out = np.asarray(layer(jnp.ones((1000, 1000))))
  np.testing.assert_allclose(np.unique(out), [0.0, 1.0 / (1.0 - rate)], rtol=1e-6)
  assert abs((out > 0).mean() - (1.0 - rate)) < 0.003
  assert abs(out.mean() - 1.0) < 0.005          # inverted dropout keeps the expectation


def test_position_time_embedding_reads_slots_on_uniform_places_and_interpolates_between():
  """time_embedding='position': places (t + 1/2) / T of a whole clip read uniformly into T =
  model.num_frames frames give the 'slot' model's output (the same parameters); other places change it; a place between two
  rows reads their mean."""
  slot, position = build(tiny_config()), build(tiny_config(time_embedding='position'))
  keypoints, mask = random_inputs(tiny_config(), frames=24)
  uniform = jnp.broadcast_to((jnp.arange(24) + 0.5) / 24, (3, 24))
  expected, _ = slot(keypoints, mask)
  np.testing.assert_allclose(position(keypoints, mask)[0], expected, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(position(keypoints, mask, frame_positions=uniform)[0], expected,
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(slot(keypoints, mask, frame_positions=uniform * 0.3)[0], expected)
  moved, _ = position(keypoints, mask, frame_positions=uniform * 0.3)
  assert np.abs(np.asarray(moved) - np.asarray(expected)).max() > 1e-3
  table = position.embedding.position_embedding[...]
  np.testing.assert_allclose(position.embedding.time_at(jnp.array([2.0 / 24, 0.0, 1.0])),
                             np.stack([(table[1] + table[2]) / 2, table[0], table[23]]),
                             rtol=1e-6, atol=1e-7)
  one, _ = position(keypoints[0], mask[0], frame_positions=uniform[0] * 0.3)
  np.testing.assert_allclose(one, moved[0], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match=r'frame_positions shape \(3, 23\) does not match'):
    position(keypoints, mask, frame_positions=uniform[:, :23])
