"""Losses: exact values on hand-made cases."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from micro_dualnet_jax import LossConfig, cross_entropy, mac_infonce, total_loss


def test_cross_entropy_with_label_smoothing_by_hand():
  logits = jnp.array([[2.0, 0.0, 0.0]])
  log_p = np.log(np.exp([2.0, 0.0, 0.0]) / np.exp([2.0, 0.0, 0.0]).sum())
  eps = 0.1
  target = np.array([1 - eps + eps / 3, eps / 3, eps / 3])
  expected = -(target * log_p).sum()
  got = cross_entropy(logits, jnp.array([0]), label_smoothing=eps)
  assert float(got) == pytest.approx(expected, rel=1e-6)
  assert float(cross_entropy(logits, jnp.array([0]))) == pytest.approx(-log_p[0], rel=1e-6)


def test_cross_entropy_weights_drop_padded_samples():
  logits = jnp.array([[2.0, 0.0], [0.0, 5.0]])
  labels = jnp.array([0, 0])
  only_first = cross_entropy(logits[:1], labels[:1])
  weighted = cross_entropy(logits, labels, weights=jnp.array([1.0, 0.0]))
  assert float(weighted) == pytest.approx(float(only_first), rel=1e-6)


def test_mac_value_by_hand():
  # Two samples, one entity: z_st = e0, e1; z_ts = e0, e0; temperature 0.1.
  z_st = jnp.array([[[1.0, 0.0]], [[0.0, 3.0]]])      # norms differ: MAC normalises
  z_ts = jnp.array([[[2.0, 0.0]], [[1.0, 0.0]]])
  # S = [[10, 10], [0, 0]]. Rows (st -> ts): log 2 each. Columns: col 0: lse(10, 0) - 10,
  # col 1: lse(10, 0) - 0.
  lse = 10 + math.log1p(math.exp(-10))
  expected = 0.5 * (math.log(2) + 0.5 * ((lse - 10) + lse))
  assert float(mac_infonce(z_st, z_ts, temperature=0.1)) == pytest.approx(expected, rel=1e-6)


def test_mac_lower_when_paths_agree():
  z = jax.random.normal(jax.random.key(0), (8, 5, 16))
  other = jax.random.normal(jax.random.key(1), (8, 5, 16))
  agree = float(mac_infonce(z, z + 0.01 * other))
  disagree = float(mac_infonce(z, other))
  assert agree < disagree
  assert agree < math.log(40) < disagree + 1.0   # chance level is log(N) with N = B * K


def test_mac_weights_equal_dropping_the_samples():
  z1 = jax.random.normal(jax.random.key(0), (6, 3, 8))
  z2 = jax.random.normal(jax.random.key(1), (6, 3, 8))
  weights = jnp.array([1, 1, 1, 1, 0, 0], jnp.float32)
  np.testing.assert_allclose(mac_infonce(z1, z2, weights=weights), mac_infonce(z1[:4], z2[:4]),
                             rtol=1e-5)


def test_total_loss_combines_with_lambda():
  logits = jax.random.normal(jax.random.key(0), (4, 5))
  labels = jnp.array([0, 1, 2, 3])
  aux = {'mac_st': jax.random.normal(jax.random.key(1), (4, 2, 8)),
         'mac_ts': jax.random.normal(jax.random.key(2), (4, 2, 8))}
  config = LossConfig(mac_weight=0.3, label_smoothing=0.1)
  loss, parts = total_loss(logits, aux, labels, config)
  assert float(loss) == pytest.approx(float(parts['ce'] + 0.3 * parts['mac']), rel=1e-6)
  loss_none, parts_none = total_loss(logits, {}, labels, LossConfig(mac='none'))
  assert float(parts_none['mac']) == 0.0 and float(loss_none) == pytest.approx(float(parts['ce']))
  with pytest.raises(ValueError, match='dual-path'):
    total_loss(logits, {}, labels, LossConfig())
  with pytest.raises(ValueError, match="mac must be one of"):
    LossConfig(mac='kl2')


def test_router_entropy_bonus_by_hand():
  """H is the mean over samples and entities of -sum a log a: log 2 at 0.5 / 0.5, 0 at 1 / 0;
  beta * H is subtracted from the loss; padded samples (weight 0) count for nothing."""
  logits, labels = jnp.zeros((2, 3)), jnp.array([0, 1])
  routing = jnp.array([[[0.5, 0.5], [1.0, 0.0]], [[0.9, 0.1], [0.2, 0.8]]])   # (B=2, K=2, 2)
  h = lambda p: -sum(x * math.log(x) for x in p if x > 0)
  expected = (0.5 * (h((0.5, 0.5)) + 0.0) + 0.5 * (h((0.9, 0.1)) + h((0.2, 0.8)))) / 2
  plain, parts = total_loss(logits, {'routing_weights': routing}, labels, LossConfig(mac='none'))
  assert float(parts['router_entropy']) == pytest.approx(expected, rel=1e-6)
  bonus, _ = total_loss(logits, {'routing_weights': routing}, labels,
                        LossConfig(mac='none', router_entropy_weight=0.5))
  assert float(bonus) == pytest.approx(float(plain) - 0.5 * expected, rel=1e-6)
  _, first_only = total_loss(logits, {'routing_weights': routing}, labels,
                             LossConfig(mac='none'), weights=jnp.array([1.0, 0.0]))
  assert float(first_only['router_entropy']) == pytest.approx(h((0.5, 0.5)) / 2, rel=1e-6)
  with pytest.raises(ValueError, match='router_entropy_weight must be a number >= 0'):
    LossConfig(router_entropy_weight=-0.1)


def test_kl_mac_is_the_per_path_ce_plus_the_symmetric_kl():
  from scipy.special import log_softmax  # pylint: disable=g-import-not-at-top
  from micro_dualnet_jax.losses import mac_kl  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
  labels = np.array([0, 2, 1, 1])
  la, lb = log_softmax(a, axis=-1), log_softmax(b, axis=-1)
  ce = 0.5 * (-la[np.arange(4), labels].mean() - lb[np.arange(4), labels].mean())
  kl = (np.exp(la) * (la - lb)).sum(-1) + (np.exp(lb) * (lb - la)).sum(-1)
  expected = ce + 0.5 * kl.mean()
  got = mac_kl(jnp.asarray(a), jnp.asarray(b), jnp.asarray(labels))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # Identical predictions: the KL part is 0.
  np.testing.assert_allclose(mac_kl(jnp.asarray(a), jnp.asarray(a), jnp.asarray(labels)),
                             -la[np.arange(4), labels].mean(), rtol=1e-5)


def test_kl_mac_runs_through_the_model_heads():
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from micro_dualnet_jax import MicroDualNet, ModelConfig  # pylint: disable=g-import-not-at-top
  config = ModelConfig(width=16, num_heads=2, spatial_layers=1, temporal_layers=1, mlp_ratio=2,
                       num_frames=8, num_classes=5, mac_projection=False, path_heads=True)
  model = MicroDualNet(config, rngs=nnx.Rngs(0))
  model.eval()
  logits, aux = nnx.jit(lambda model, x: model(x))(model, jnp.ones((2, 8, 22, 3)))  # one compile
  assert aux['path_logits_st'].shape == aux['path_logits_ts'].shape == (2, 5)
  loss, parts = total_loss(logits, aux, jnp.array([0, 1]), LossConfig(mac='kl'))
  assert np.isfinite(loss) and parts['mac'] > 0
  with pytest.raises(ValueError, match='path_heads=True'):
    total_loss(logits, {}, jnp.array([0, 1]), LossConfig(mac='kl'))


def test_total_loss_smooths_the_labels_by_hand():
  """CE against (1 - eps) * one_hot + eps / N, by hand, through total_loss (what training
  optimises), not through the parts it returns."""
  logits = [[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]
  labels = [0, 2]
  eps = 0.3
  per_sample = []
  for row, label in zip(logits, labels):
    log_norm = math.log(sum(math.exp(v) for v in row))
    targets = [(1 - eps) * (c == label) + eps / 3 for c in range(3)]
    per_sample.append(-sum(t * (v - log_norm) for t, v in zip(targets, row)))
  expected = sum(per_sample) / 2                    # 1.0139 here; 0.8139 without smoothing
  config = LossConfig(label_smoothing=eps, mac='none')
  loss, parts = total_loss(jnp.array(logits), {}, jnp.array(labels), config)
  assert float(loss) == pytest.approx(expected, rel=1e-6)
  assert float(parts['ce']) == pytest.approx(expected, rel=1e-6)
  weighted, _ = total_loss(jnp.array(logits), {}, jnp.array(labels), config,
                           weights=jnp.array([0.0, 1.0]))
  assert float(weighted) == pytest.approx(per_sample[1], rel=1e-6)
