"""Figures: training curves, confusion matrices, the entity routing weights, the timeline of a
long recording and an animated clip.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot: no
display, no global figure state, safe to call from a training loop. Every function writes one
file (PNG; GIF for `render_clip`) and returns its path.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.animation import PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from micro_dualnet_jax import atomic
from micro_dualnet_jax.metrics import class_routing_means
from micro_dualnet_jax.skeleton import Layout, get_layout
from micro_dualnet_jax.timeline import label_name

_DPI = 110


def _new_figure(width: float, height: float) -> Figure:
  fig = Figure(figsize=(width, height), layout='constrained')
  FigureCanvasAgg(fig)
  return fig


def _save(fig: Figure, out_png: str | os.PathLike) -> str:
  out_png = os.fspath(out_png)
  os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
  with atomic.atomic_path(out_png) as temporary:
    fig.savefig(temporary, dpi=_DPI, format='png')
  return out_png


# ----------------------------------------------------------------------------- training curves


def _is_loss(key: str) -> bool:
  return key.endswith('loss')


def _is_learning_rate(key: str) -> bool:
  return key.endswith('learning_rate') or key == 'lr' or key.endswith(('/lr', '_lr'))


def _is_top1(key: str) -> bool:
  return key.endswith('top1')


# (panel title, which keys it plots). Suffix rules, so 'train_loss', 'train/loss', 'mac_loss',
# 'eval_top1' and 'val/top1' all land where a reader expects them.
_CURVE_PANELS = (
    ('loss', _is_loss),
    ('learning rate', _is_learning_rate),
    ('top-1 (%)', _is_top1),
)


def read_metrics_jsonl(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Reads a JSON-lines metric log into {key: (steps (n,), values (n,))}.

  Each line is a dict with an int 'step' and any metric keys; a key may be absent from some lines.
  Non-numeric values (strings, lists) are skipped; blank lines are ignored.
  """
  series: dict[str, tuple[list[float], list[float]]] = {}
  with open(path) as f:
    for line_no, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f'{path}: line {line_no} is not valid JSON ({e.msg})') from None
      if not isinstance(record, dict) or not isinstance(record.get('step'), (int, float)):
        raise ValueError(f'{path}: line {line_no} is not a dict with a numeric "step": {line[:80]!r}')
      for key, value in record.items():
        if key == 'step' or isinstance(value, bool) or not isinstance(value, (int, float)):
          continue
        steps, values = series.setdefault(key, ([], []))
        steps.append(record['step'])
        values.append(value)
  if not series:
    raise ValueError(f'{path}: no metric values found')
  return {k: (np.asarray(s, np.float64), np.asarray(v, np.float64)) for k, (s, v) in series.items()}


def plot_training_curves(metrics_jsonl_path: str | os.PathLike, out_png: str | os.PathLike) -> str:
  """Loss, learning rate and top-1 against step from the run's JSON-lines metric log.

  Panels collect keys by suffix: '*loss'; 'learning_rate' / 'lr'; '*top1' (train and eval
  series in the same panel). A panel with no matching key says so instead of failing.
  """
  series = read_metrics_jsonl(metrics_jsonl_path)
  fig = _new_figure(5.0 * len(_CURVE_PANELS), 4.0)
  axes = fig.subplots(1, len(_CURVE_PANELS))
  for ax, (title, matches) in zip(axes, _CURVE_PANELS):
    keys = sorted(k for k in series if matches(k))
    for key in keys:
      steps, values = series[key]
      order = np.argsort(steps, kind='stable')
      # Markers for sparse series (evaluations), plain lines for per-step logs.
      ax.plot(steps[order], values[order], marker='o' if len(steps) <= 30 else None,
              markersize=3, label=key)
    ax.set_title(title)
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
    if keys:
      ax.legend(fontsize=8)
    else:
      ax.text(0.5, 0.5, 'no data', ha='center', va='center', transform=ax.transAxes)
  fig.suptitle(os.path.basename(os.fspath(metrics_jsonl_path)))
  return _save(fig, out_png)


# ----------------------------------------------------------------------------- confusion matrix


def _class_names(class_names: Sequence[str] | None, num: int) -> list[str]:
  if class_names is None:
    return [str(i) for i in range(num)]
  names = [str(n) for n in class_names]
  if len(names) != num:
    raise ValueError(f'got {len(names)} class names for {num} classes')
  return names


def plot_confusion_matrix(cm: Any, class_names: Sequence[str] | None, out_png: str | os.PathLike,
                          title: str | None = None) -> str:
  """Row-normalised confusion matrix (rows true, columns predicted; each row sums to 1).

  Args:
    cm: (C, C) non-negative counts, e.g. `metrics['confusion_matrix']`.
    class_names: C names (None: class indices).
    out_png: output path.
    title: optional figure title.

  The figure grows with C so 52 class names stay readable; cells carry values up to C = 20.
  Rows of classes absent from the evaluation stay blank.
  """
  cm = np.asarray(cm, np.float64)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
    raise ValueError(f'cm must be a non-empty square (C, C) array, got shape {cm.shape}')
  if not np.isfinite(cm).all() or (cm < 0).any():
    raise ValueError('cm must hold finite non-negative counts')
  c = cm.shape[0]
  names = _class_names(class_names, c)
  row_sums = cm.sum(axis=1, keepdims=True)
  with np.errstate(invalid='ignore', divide='ignore'):
    norm = np.where(row_sums > 0, cm / row_sums, np.nan)
  side = max(6.0, 0.3 * c + 3.0)
  fontsize = 9 if c <= 20 else 7
  fig = _new_figure(side + 1.0, side)
  ax = fig.add_subplot()
  image = ax.imshow(norm, cmap='Blues', vmin=0.0, vmax=1.0, interpolation='nearest')
  fig.colorbar(image, ax=ax, shrink=0.6, label='fraction of true class')
  ax.set_xticks(np.arange(c), labels=names, rotation=90, fontsize=fontsize)
  ax.set_yticks(np.arange(c), labels=names, fontsize=fontsize)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  if c <= 20:
    for i, j in zip(*np.nonzero(np.nan_to_num(norm) >= 0.005)):
      ax.text(j, i, f'{norm[i, j]:.2f}', ha='center', va='center', fontsize=7,
              color='white' if norm[i, j] > 0.6 else 'black')
  total = int(cm.sum())
  accuracy = 100.0 * np.trace(cm) / total if total else float('nan')
  ax.set_title(f'{title + ": " if title else ""}{total} samples, top-1 {accuracy:.2f}%')
  return _save(fig, out_png)


# ----------------------------------------------------------------------------- routing weights


def _check_routing(weights: Any, num_entities: int) -> np.ndarray:
  weights = np.asarray(weights, np.float64)
  if weights.ndim not in (2, 3) or weights.shape[-2:] != (num_entities, 2) or weights.size == 0:
    raise ValueError(
        f'weights must be (N, K, 2) or (K, 2) with K = {num_entities} entities, '
        f'got shape {weights.shape}')
  if not np.isfinite(weights).all() or (weights < 0).any() or (weights > 1).any():
    raise ValueError('weights must be routing probabilities in [0, 1]')
  if np.abs(weights.sum(axis=-1) - 1.0).max() > 1e-2:
    raise ValueError('weights must sum to 1 over the last axis ([a_st, a_ts])')
  return weights


@dataclasses.dataclass(frozen=True)
class RoutingFigureData:
  """What the routing figure shows (`routing_figure_data`).

  entities: K entity names; st_share: (K,) mean share of the ST path per entity (the bars);
  num_samples: N, or None for weights given already averaged; class_names: C names, or None
  without labels; class_st_share: (C, K) mean ST share per class and entity (NaN: a class
  without samples), or None without labels.
  """
  entities: list[str]
  st_share: np.ndarray
  num_samples: int | None
  class_names: list[str] | None
  class_st_share: np.ndarray | None


def routing_figure_data(weights: Any, entity_names: Sequence[str],
                        class_names: Sequence[str] | None = None,
                        labels: Any | None = None) -> RoutingFigureData:
  """Checks the routing weights and computes what `plot_routing_weights` draws.

  Args:
    weights: routing weights [a_st, a_ts], per sample (N, K, 2) or already averaged (K, 2).
    entity_names: K entity names in model order (e.g. `layout.entity_names`).
    class_names: optional class names; with labels, sets the rows of the heat map.
    labels: optional (N,) true classes of the samples (needs per-sample weights).
  """
  entities = [str(e) for e in entity_names]
  if not entities:
    raise ValueError('entity_names is empty')
  weights = _check_routing(weights, len(entities))
  st_share = weights[..., 0]
  mean_st = st_share.mean(axis=0) if st_share.ndim == 2 else st_share
  if class_names is not None and labels is None:
    raise ValueError('class_names needs labels (the class of every sample)')

  names, per_class = None, None
  if labels is not None:
    if weights.ndim != 3:
      raise ValueError(f'labels need per-sample weights (N, K, 2), got shape {weights.shape}')
    labels = np.asarray(labels)
    if labels.shape != (weights.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(f'labels must be ({weights.shape[0]},) ints, got {labels.shape} {labels.dtype}')
    num_classes = len(class_names) if class_names is not None else int(labels.max()) + 1
    if labels.min() < 0 or labels.max() >= num_classes:
      raise ValueError(f'labels must lie in [0, {num_classes}), got range '
                       f'[{labels.min()}, {labels.max()}]')
    names = _class_names(class_names, num_classes)
    per_class = class_routing_means(st_share, labels, num_classes)
  return RoutingFigureData(entities, mean_st, weights.shape[0] if weights.ndim == 3 else None,
                           names, per_class)


def routing_figure(data: RoutingFigureData) -> Figure:
  """The routing figure of `data`: ST / TS share bars per entity, and with classes a heat map of
  the ST share per class and entity."""
  entities, mean_st, names, per_class = (data.entities, data.st_share, data.class_names,
                                         data.class_st_share)
  k = len(entities)
  if per_class is None:
    fig = _new_figure(max(5.0, 1.0 * k + 2.0), 4.0)
    ax_bar = fig.add_subplot()
  else:
    height = max(5.0, 0.22 * len(names) + 2.0)
    fig = _new_figure(max(5.0, 1.0 * k + 2.0) + 0.9 * k + 4.0, height)
    ax_bar, ax_map = fig.subplots(1, 2, width_ratios=(1.0, 1.2))

  positions = np.arange(k)
  ax_bar.bar(positions, mean_st, color='tab:blue', label='ST (spatial first)')
  ax_bar.bar(positions, 1.0 - mean_st, bottom=mean_st, color='tab:orange', alpha=0.5,
             label='TS (temporal first)')
  ax_bar.axhline(0.5, color='black', linewidth=0.8, linestyle='--')
  for x, v in zip(positions, mean_st):
    ax_bar.text(x, v / 2, f'{v:.2f}', ha='center', va='center', fontsize=8, color='white')
  ax_bar.set_xticks(positions, labels=entities, rotation=30, ha='right')
  ax_bar.set_ylim(0.0, 1.0)
  ax_bar.set_ylabel('mean routing weight')
  samples = f', {data.num_samples} samples' if data.num_samples is not None else ''
  ax_bar.set_title(f'path share per entity{samples}')
  ax_bar.legend(fontsize=8, loc='lower right')

  if per_class is not None:
    image = ax_map.imshow(per_class, cmap='RdBu_r', vmin=0.0, vmax=1.0, aspect='auto',
                          interpolation='nearest')
    fig.colorbar(image, ax=ax_map, shrink=0.6, label='ST share (1 = all ST, 0 = all TS)')
    ax_map.set_xticks(positions, labels=entities, rotation=30, ha='right')
    ax_map.set_yticks(np.arange(len(names)), labels=names,
                      fontsize=8 if len(names) <= 32 else 6)
    for i, j in zip(*np.nonzero(np.isfinite(per_class))):
      v = per_class[i, j]
      ax_map.text(j, i, f'{v:.2f}', ha='center', va='center', fontsize=6,
                  color='white' if abs(v - 0.5) > 0.3 else 'black')
    ax_map.set_title('ST share per class (blank: no samples)')
  return fig


def plot_routing_weights(weights: Any, entity_names: Sequence[str], out_png: str | os.PathLike,
                         class_names: Sequence[str] | None = None, labels: Any | None = None) -> str:
  """Which body part prefers which path (docs/method.md, "Entity-level routing").

  Args:
    weights: routing weights [a_st, a_ts], per sample (N, K, 2) or already averaged (K, 2).
    entity_names: K entity names in model order (e.g. `layout.entity_names`).
    out_png: output path.
    class_names: optional class names; with labels, sets the rows of the heat map.
    labels: optional (N,) true classes of the samples (needs per-sample weights). With labels, a
      second panel shows the mean ST share per class and entity (classes x entities).

  The bar panel shows the mean share of the ST (spatial-first) path per entity; 0.5 is the
  initial, undecided blend. Above 0.5 the entity leans on ST, below on TS (temporal-first).
  The values drawn are `routing_figure_data`'s.
  """
  data = routing_figure_data(weights, entity_names, class_names, labels)
  return _save(routing_figure(data), out_png)


# ----------------------------------------------------------------------------- long recordings and clips


def _class_colors(num_classes: int) -> np.ndarray:
  cmap = colormaps['tab20' if num_classes <= 20 else 'turbo']
  return cmap(np.linspace(0, 1, num_classes) if num_classes > 20 else np.arange(num_classes))


def plot_timeline(out_png: str | os.PathLike[str], labels: np.ndarray, starts: np.ndarray,
                  ends: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray,
                  routing: np.ndarray, class_names: Sequence[str], entity_names: Sequence[str],
                  fps: float, title: str = '') -> str:
  """Timeline PNG: the smoothed per-frame actions ('no person' grey), each window's top-1
  probability, and each entity's ST routing share over time.

  Args:
    labels: (T,) smoothed frame labels (NO_PERSON_LABEL for no person).
    starts, ends: (W,) window frames [start, end).
    probabilities: (W, N); predicted: (W,) bool; routing: (W, K, 2).
  """
  colors = _class_colors(len(class_names))
  seconds = len(labels) / fps
  fig = _new_figure(12.0, 7.0)
  ax_band, ax_prob, ax_route = fig.subplots(3, 1, sharex=True, height_ratios=(1.0, 1.6, 1.6))
  grey = np.array([[0.82, 0.82, 0.82, 1.0]])
  band = np.where(labels < 0, 0, labels + 1)[None]
  ax_band.imshow(band, aspect='auto', interpolation='nearest', extent=(0, seconds, 0, 1),
                 cmap=ListedColormap(np.concatenate([grey, colors])), vmin=0,
                 vmax=len(class_names))
  ax_band.set_yticks([])
  present = sorted(set(int(x) for x in np.unique(labels)))
  handles = [Patch(color=grey[0] if c < 0 else colors[c], label=label_name(c, class_names))
             for c in present]
  ax_band.legend(handles=handles, fontsize=7, loc='upper left', bbox_to_anchor=(1.0, 1.0),
                 ncol=1 + len(handles) // 12)
  ax_band.set_title(f'{title + ": " if title else ""}smoothed micro-action timeline')
  centres = (starts + ends) / 2.0 / fps
  top1 = np.argmax(probabilities, axis=1)
  for c in np.unique(top1[predicted]):
    rows = predicted & (top1 == c)
    ax_prob.scatter(centres[rows], probabilities[rows, c], s=10, color=colors[c])
  ax_prob.set_ylim(0.0, 1.05)
  ax_prob.set_ylabel('window top-1 prob.')
  ax_prob.grid(alpha=0.3)
  for k, entity in enumerate(entity_names):
    ax_route.plot(centres, routing[:, k, 0], linewidth=1.0, label=entity)
  ax_route.axhline(0.5, color='black', linewidth=0.8, linestyle='--')
  ax_route.set_ylim(0.0, 1.0)
  ax_route.set_ylabel('ST share (1 = spatial first)')
  ax_route.set_xlabel('time (s)')
  ax_route.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.0, 1.0))
  ax_route.grid(alpha=0.3)
  return _save(fig, out_png)


def _joint_entities(layout: Layout, entity_names: Sequence[str]) -> np.ndarray:
  """(V,) the entity index drawn for each joint (-1: none); hands win over the head and torso."""
  owner = np.full(layout.num_joints, -1)
  by_size = sorted(range(len(entity_names)), key=lambda k: -len(layout.entities[entity_names[k]]))
  for k in by_size:   # smaller (more specific) entities are written last and win
    owner[list(layout.entities[entity_names[k]])] = k
  return owner


def render_clip(keypoints: np.ndarray, confidence: np.ndarray, layout: Layout | str,
                out_path: str | os.PathLike[str], *, routing_weights: np.ndarray | None = None,
                entity_names: Sequence[str] | None = None, fps: float = 30.0,
                title: str = '', max_frames: int = 90) -> str:
  """Animates a clip as a GIF: bones coloured by entity, the entities' routing weights beside it.

  Written with matplotlib's PillowWriter (Pillow is a dependency of matplotlib, which needs it to
  write PNGs too). 3D clips are drawn as their x-y projection.

  Args:
    keypoints: (T, V, C) coordinates (image y down for 2D data).
    confidence: (T, V); joints with 0 are not drawn.
    layout: the clip's joint layout.
    out_path: output file (.gif).
    routing_weights: optional (K, 2) [a_st, a_ts] per entity, shown as bars.
    entity_names: K entities (default: the layout's).
    fps: frame rate of the clip; the GIF plays at real speed after subsampling.
    title: figure title.
    max_frames: at most this many frames are drawn (uniformly subsampled).

  Returns:
    The path written.
  """
  layout = get_layout(layout) if isinstance(layout, str) else layout
  entity_names = list(entity_names or layout.entity_names)
  keypoints, confidence = np.asarray(keypoints), np.asarray(confidence)
  if keypoints.ndim != 3 or keypoints.shape[1] != layout.num_joints:
    raise ValueError(f'keypoints must be (T, {layout.num_joints}, C) for layout '
                     f'{layout.name!r}, got {keypoints.shape}')
  visible = confidence > 0
  if not visible.any():
    raise ValueError('nothing to render: no joint is visible in any frame')
  frames = np.unique(np.linspace(0, len(keypoints) - 1, min(max_frames, len(keypoints)))
                     .round().astype(int))
  colors = _class_colors(len(entity_names))
  owner = _joint_entities(layout, entity_names)
  xy = keypoints[..., :2]
  low, high = xy[visible].min(0), xy[visible].max(0)
  pad = 0.08 * max(float((high - low).max()), 1e-6)

  width = 8.0 if routing_weights is not None else 5.0
  fig = _new_figure(width, 5.0)
  if routing_weights is not None:
    ax, ax_bar = fig.subplots(1, 2, width_ratios=(1.6, 1.0))
    st = np.asarray(routing_weights)[:, 0]
    ax_bar.barh(np.arange(len(entity_names)), st, color=colors[:len(entity_names)])
    ax_bar.axvline(0.5, color='black', linewidth=0.8, linestyle='--')
    ax_bar.set_yticks(np.arange(len(entity_names)), labels=entity_names, fontsize=8)
    ax_bar.set_xlim(0.0, 1.0)
    ax_bar.set_xlabel('ST share (TS = 1 - ST)')
    ax_bar.set_title('routing per body part', fontsize=9)
  else:
    ax = fig.add_subplot()
  ax.set_xlim(low[0] - pad, high[0] + pad)
  ax.set_ylim(high[1] + pad, low[1] - pad)   # image coordinates: y down
  ax.set_aspect('equal')
  ax.set_xticks([])
  ax.set_yticks([])
  bones = [(j, p) for j, p in layout.bones]
  lines = [ax.plot([], [], linewidth=2.0, color=colors[owner[j]] if owner[j] >= 0 else 'grey')[0]
           for j, _ in bones]
  dots = ax.scatter(np.zeros(layout.num_joints), np.zeros(layout.num_joints), s=10,
                    c=[colors[o] if o >= 0 else (0.5, 0.5, 0.5, 1.0) for o in owner])
  label = ax.set_title(title, fontsize=9)

  def draw(t: int) -> None:
    for line, (j, p) in zip(lines, bones):
      if visible[t, j] and visible[t, p]:
        line.set_data(xy[t, [j, p], 0], xy[t, [j, p], 1])
      else:
        line.set_data([], [])
    dots.set_offsets(np.where(visible[t][:, None], xy[t], np.nan))
    label.set_text(f'{title}  frame {t}' if title else f'frame {t}')

  out_path = os.fspath(out_path)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)) or '.', exist_ok=True)
  step = len(keypoints) / len(frames)
  writer = PillowWriter(fps=max(1, round(fps / step)))
  with atomic.atomic_path(out_path) as temporary, writer.saving(fig, temporary, dpi=80):
    for t in frames:
      draw(int(t))
      writer.grab_frame()
  return out_path
