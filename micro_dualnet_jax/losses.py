"""Training losses (docs/method.md, "Training objective").

  total = CE(logits, labels; label smoothing) + lambda * MAC - beta * H(router)

H(router) is the mean entropy (nats) of the per-entity routing weights [a_st, a_ts]; beta
(`LossConfig.router_entropy_weight`) is 0 unless asked for.

MAC (mutual action consistency between the two paths), `LossConfig.mac`:
  'infonce'  the paper's: symmetric InfoNCE between the paths' projected entity features
             (`mac_infonce`);
  'kl'       each path classifies on its own (a linear head on its pooled features, trained with
             the same CE) and the two predictions are pulled together by a symmetric KL
             divergence (`mac_kl`);
  'none'     no consistency term.

Every loss takes optional per-sample weights (B,) so padded samples of a partial batch count for
nothing: a weight-0 sample is neither an anchor nor a negative.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from micro_dualnet_jax.config.training import LossConfig

def _weighted_mean(values: jax.Array, weights: jax.Array | None) -> jax.Array:
  if weights is None:
    return jnp.mean(values)
  weights = weights.astype(values.dtype)
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def cross_entropy(logits: jax.Array, labels: jax.Array, *, label_smoothing: float = 0.0,
                  weights: jax.Array | None = None) -> jax.Array:
  """Mean softmax cross-entropy with label smoothing.

  Target = (1 - eps) * one_hot(label) + eps / num_classes. logits (B, N), labels (B,) int,
  weights (B,) or None -> scalar.
  """
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return _weighted_mean(-jnp.sum(targets * log_probs, axis=-1), weights)


def mac_infonce(z_st: jax.Array, z_ts: jax.Array, *, temperature: float = 0.1,
                weights: jax.Array | None = None) -> jax.Array:
  """Mutual Action Consistency as symmetric InfoNCE over (sample, entity) pairs.

  z_st, z_ts (B, K, P) are L2-normalised here; with n = (b, k) flattened to N = B * K,
  S = z_st z_ts^T / temperature (N, N). The positive of row n is column n (same sample and
  entity); negatives are every other (sample, entity) pair in the batch (under jit with a sharded
  batch, that is the global batch).
    MAC = 1/2 [ CE(S, diag) + CE(S^T, diag) ].
  weights (B,): samples with weight 0 are dropped as anchors and as negatives.
  """
  b, k, _ = z_st.shape

  def normalise(z):
    z = z.astype(jnp.float32).reshape(b * k, -1)
    return z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, axis=-1, keepdims=True), 1e-12))

  sim = normalise(z_st) @ normalise(z_ts).T / temperature          # (N, N)
  row_weights = None if weights is None else jnp.repeat(weights.astype(jnp.float32), k)
  if row_weights is not None:
    valid = row_weights > 0                    # padded pairs are neither anchors nor negatives
    sim = jnp.where(valid[:, None] & valid[None, :], sim, -1e9)
  # The diagonal as a masked row sum (exact: one term, the rest zeros). jnp.diagonal lowers to a
  # platform-dependent conditional whose gathers, on a sharded batch, become collectives inside
  # the conditional; on a multi-device CPU those can wait on one another and abort the run.
  positives = jnp.sum(jnp.where(jnp.eye(sim.shape[0], dtype=bool), sim, 0.0), axis=1)
  loss_st = jax.nn.logsumexp(sim, axis=1) - positives
  loss_ts = jax.nn.logsumexp(sim, axis=0) - positives
  return 0.5 * (_weighted_mean(loss_st, row_weights) + _weighted_mean(loss_ts, row_weights))


def mac_kl(logits_st: jax.Array, logits_ts: jax.Array, labels: jax.Array, *,
           label_smoothing: float = 0.0, weights: jax.Array | None = None) -> jax.Array:
  """The 'kl' MAC: per-path CE plus the symmetric KL between the paths' predictions.

  logits_st, logits_ts (B, N) from the per-path heads; with p, q their softmaxes,
    MAC = 1/2 [CE(p) + CE(q)] + 1/2 [KL(p || q) + KL(q || p)].
  The CE keeps each head a classifier (without it both could agree on the uniform guess).
  """
  ce = 0.5 * (cross_entropy(logits_st, labels, label_smoothing=label_smoothing, weights=weights)
              + cross_entropy(logits_ts, labels, label_smoothing=label_smoothing,
                              weights=weights))
  log_p = jax.nn.log_softmax(logits_st.astype(jnp.float32), axis=-1)
  log_q = jax.nn.log_softmax(logits_ts.astype(jnp.float32), axis=-1)
  p, q = jnp.exp(log_p), jnp.exp(log_q)
  kl = jnp.sum(p * (log_p - log_q), axis=-1) + jnp.sum(q * (log_q - log_p), axis=-1)
  return ce + 0.5 * _weighted_mean(kl, weights)


def router_entropy(routing_weights: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """Mean entropy (nats) of the routing weights (B, K, 2) over entities and samples:
  -sum_p a_p log a_p, 0 for a binary choice, log 2 for 0.5 / 0.5."""
  p = routing_weights.astype(jnp.float32)
  entropy = -jnp.sum(p * jnp.log(jnp.clip(p, 1e-12, 1.0)), axis=-1)     # (B, K)
  return _weighted_mean(jnp.mean(entropy, axis=-1), weights)


def total_loss(logits: jax.Array, aux: Mapping[str, jax.Array], labels: jax.Array,
               config: LossConfig, *, weights: jax.Array | None = None
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """CE + lambda * MAC - beta * H(router). Returns (scalar loss, {'ce', 'mac',
  'router_entropy', 'loss'})."""
  ce = cross_entropy(logits, labels, label_smoothing=config.label_smoothing, weights=weights)
  if config.mac == 'infonce':
    if 'mac_st' not in aux:
      raise ValueError("mac='infonce' needs a dual-path model with mac_projection=True")
    mac = mac_infonce(aux['mac_st'], aux['mac_ts'], temperature=config.mac_temperature,
                      weights=weights)
  elif config.mac == 'kl':
    if 'path_logits_st' not in aux:
      raise ValueError("mac='kl' needs a dual-path model with path_heads=True")
    mac = mac_kl(aux['path_logits_st'], aux['path_logits_ts'], labels,
                 label_smoothing=config.label_smoothing, weights=weights)
  else:
    mac = jnp.zeros((), jnp.float32)
  if 'routing_weights' in aux:
    entropy = router_entropy(aux['routing_weights'], weights)
  elif config.router_entropy_weight:
    raise ValueError('router_entropy_weight > 0 needs the model\'s routing weights in aux')
  else:
    entropy = jnp.zeros((), jnp.float32)
  loss = ce + config.mac_weight * mac - config.router_entropy_weight * entropy
  return loss, {'loss': loss, 'ce': ce, 'mac': mac, 'router_entropy': entropy}
