"""Prediction on new pose data and long recordings (`--mode=predict`).

    python main.py --mode=predict --config=configs/synthetic.py --workdir=<trained run> \
        --input=<OpenPose JSON folder | recording.npy | *_light_hand.csv | clips.pkl>

**Which config.** The model is rebuilt from `<workdir>/config.json`, the config the run was trained
with; the `--config` on the command line only supplies the `predict` options (its model section
is ignored, and a difference from the trained one is printed as a note).

**Inputs** are read by `data/recordings.py`; the model is `inference.Predictor`, the timeline
algorithm `timeline.py`, the figures `report.py`. This module holds the options, the per-recording
outputs and the mode itself.

**Frames with nobody.** A frame where no joint of the model's layout is detected (OpenPose's empty
`people`, an all-zero row) is a 'no person' frame: counted, reported, and never an error. Such
frames are dropped from a window before the model samples its frames (the model sees the frames
with a person, in their order), and the forward pass also masks any that reach it out of the
frame mask. A window with nobody in it is not run and gets no prediction ('no person'); every
other window gets one, so every frame with a person gets a label.

**Short inputs** (at most one window): clip-level top-k classes and the routing weights per body
part, printed and written to `prediction.json` (plus `clip.gif`, see `render_clip`).

**Long inputs** are cut into windows of `window` frames every `stride` frames (the last window
ends at the last frame) and run through one jit-compiled step in fixed-size batches (the last
batch padded with empty rows that are dropped). Defaults:

  window = min(2 * model.num_frames, data.max_frames). The model sees num_frames frames sampled
           uniformly from a whole training clip; training clips hold one 1-3 s micro-action with
           some context, about twice num_frames long (synthetic: 60-150 frames for T = 48;
           paper default T = 64 gives 128 frames, ~4 s at 30 fps), and never more than
           data.max_frames (longer ones are subsampled by the loader). A window this long shows
           the model the temporal density it was trained at.
  stride = window // 2, so every frame (except the first and last half window) is seen by two.
  smoothing = the stride rounded up to an odd number of frames (see `frame_timeline`).

Outputs (in `output_dir`, default `<workdir>/predict/<input name>/`):
  windows.csv    one row per window: start/end frame and seconds, frames with a person,
                 status ('ok' | 'no person'), top-k labels and probabilities, the ST and TS
                 routing weight of every entity;
  timeline.csv   the smoothed per-frame timeline as segments (start, end, label);
  summary.json   settings, frame counts, window counts, percent of time per action, mean
                 routing weights per entity and per predicted action;
  timeline.png   the timeline, the window probabilities and the routing weights over time.

**Percent of time.** Every frame gets exactly one label: 'no person', or the micro-action of the
smoothed timeline. `percent_of_time` divides the frames of each label by all frames (the values,
'no person' included, sum to 100); `percent_of_person_time` leaves the 'no person' frames out.
A model whose class list has a background class (named by `background_class`, default
'background') reports its share like any class and names it in `summary.json`
('background_percent'); it is never merged into 'no person', which only counts frames with nobody
detected.

**Options** are function parameters; a parameter left at None is read from the `predict`
section of the command line's config (`--config.predict.window=...`), else the default above
(`PredictOptions`). The trained run's own `predict` section is not used.
"""

from __future__ import annotations

import csv
import os
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from micro_dualnet_jax import atomic, dirlock, report
from micro_dualnet_jax import metrics as metrics_lib
from micro_dualnet_jax.config import PredictOptions, RunConfig
from micro_dualnet_jax.data.clip import Clip
from micro_dualnet_jax.data.recordings import load_recordings
from micro_dualnet_jax.errors import InputError
from micro_dualnet_jax.inference import (NonFiniteOutputError, Predictor, restore_model,
                                         routing_entries, run_config, topk_entries)
from micro_dualnet_jax.rundir import RunDir
from micro_dualnet_jax.timeline import (NO_PERSON, frame_timeline, label_name,
                                        segments, time_shares, window_starts)

# ----------------------------------------------------------------------------- one recording


class _Progress:
  """A plain-text progress bar on stderr."""

  def __init__(self, total: int, what: str, enabled: bool = True, width: int = 30):
    self.total, self.what, self.enabled, self.width = total, what, enabled, width
    self.start = time.time()

  def __call__(self, done: int) -> None:
    if not self.enabled:
      return
    elapsed = time.time() - self.start
    rate = done / max(elapsed, 1e-9)
    eta = (self.total - done) / max(rate, 1e-9)
    filled = int(self.width * done / max(self.total, 1))
    sys.stderr.write(f'\r{self.what} {done}/{self.total} [{"#" * filled}'
                     f'{"." * (self.width - filled)}] {rate:.1f}/s ETA {eta:.0f} s')
    if done >= self.total:
      sys.stderr.write('\n')
    sys.stderr.flush()


def predict_clip(predictor: Predictor, clip: Clip, options: PredictOptions,
                 output_dir: str | os.PathLike[str], *, verbose: bool = True) -> dict[str, Any]:
  """Runs the model over one recording and writes its outputs (module docstring).

  Args:
    predictor: the trained model.
    clip: the recording in the model's layout.
    options: resolved options (`PredictOptions.resolved`).
    output_dir: where the files go (created).
    verbose: print tables and the progress bar.

  Returns:
    The summary written to prediction.json (short input) or summary.json (long input).
  """
  output_dir = os.fspath(output_dir)
  total = clip.num_frames
  person = np.any(clip.confidence > 0, axis=-1)
  empty = int(np.sum(~person))
  starts = window_starts(total, options.window, options.stride)
  ends = np.minimum(starts + options.window, total)
  cumulative = np.concatenate([[0], np.cumsum(person)])
  window_person = cumulative[ends] - cumulative[starts]
  run_rows = np.flatnonzero(window_person > 0)
  progress = _Progress(len(run_rows), 'windows', enabled=verbose and len(starts) > 1)
  try:
    out = predictor.run(clip.keypoints, clip.confidence, starts[run_rows], options.window,
                        progress)
  except NonFiniteOutputError as error:   # before any file of this recording is written
    raise NonFiniteOutputError(f'{clip.source}: {error}') from None
  os.makedirs(output_dir, exist_ok=True)
  num_classes, k = len(predictor.class_names), len(predictor.entity_names)
  probabilities = np.zeros((len(starts), num_classes))
  routing = np.full((len(starts), k, 2), np.nan)
  predicted = np.zeros(len(starts), bool)
  probabilities[run_rows] = out['probabilities']
  routing[run_rows] = out['routing_weights']
  predicted[run_rows] = out['person_frames'] > 0
  probabilities[~predicted] = 0.0
  routing[~predicted] = np.nan
  common = {
      'input': clip.source, 'recording': clip.clip_id, 'workdir_step': predictor.step,
      'layout': predictor.layout.name, 'fps': options.fps, 'num_frames': total,
      'empty_frames': empty, 'empty_percent': 100.0 * empty / total,
  }
  if total <= options.window:
    return _short_result(predictor, clip, options, output_dir, common,
                         probabilities[0] if predicted[0] else None, routing[0], verbose)

  raw, smoothed = frame_timeline(total, starts, options.window, probabilities, predicted, person,
                                 options.smoothing)
  shares = time_shares(smoothed, predictor.class_names)
  ranked = metrics_lib.topk_indices(probabilities, options.top_k)
  _write_windows_csv(os.path.join(output_dir, 'windows.csv'), starts, ends, window_person,
                     predicted, ranked, probabilities, routing, predictor, options.fps)
  _write_timeline_csv(os.path.join(output_dir, 'timeline.csv'), smoothed, predictor.class_names,
                      options.fps)
  top1 = ranked[:, 0]
  by_action = {}
  for c in np.unique(top1[predicted]):
    mean = routing[predicted & (top1 == c)].mean(axis=0)
    by_action[predictor.class_names[c]] = {e: float(w[0]) for e, w in
                                           zip(predictor.entity_names, mean)}
  background = (options.background_class
                if options.background_class in predictor.class_names else None)
  summary = {
      **common, 'window': options.window, 'stride': options.stride,
      'smoothing': options.smoothing, 'batch_size': predictor.batch_size,
      'windows': {'total': len(starts), 'predicted': int(predicted.sum()),
                  'no_person': int((~predicted).sum())},
      **shares,
      'background_class': background,
      'background_percent': shares['percent_of_time'][background] if background else None,
      'frames_changed_by_smoothing': int(np.sum(raw != smoothed)),
      'mean_routing_weights': (routing_entries(np.nanmean(routing[predicted], axis=0),
                                             predictor.entity_names)
                               if predicted.any() else None),
      'st_share_by_predicted_action': by_action,
  }
  atomic.write_json(os.path.join(output_dir, 'summary.json'), summary)
  report.plot_timeline(os.path.join(output_dir, 'timeline.png'), smoothed, starts, ends, probabilities,
                predicted, routing, predictor.class_names, predictor.entity_names, options.fps,
                title=clip.clip_id)
  if verbose:
    print(_shares_table(shares, total, options.fps), flush=True)
    print(f'outputs: {output_dir}', flush=True)
  return summary


def _short_result(predictor: Predictor, clip: Clip, options: PredictOptions, output_dir: str,
                  common: dict[str, Any], probabilities: np.ndarray | None,
                  routing: np.ndarray, verbose: bool) -> dict[str, Any]:
  """Clip-level result of an input of at most one window."""
  result: dict[str, Any] = {**common, 'window': options.window}
  if probabilities is None:
    result.update(status=NO_PERSON, top_k=[], routing_weights=None)
  else:
    result.update(status='ok',
                  top_k=topk_entries(probabilities, predictor.class_names, options.top_k),
                  routing_weights=routing_entries(routing, predictor.entity_names))
  atomic.write_json(os.path.join(output_dir, 'prediction.json'), result)
  if verbose:
    print(_clip_table(result), flush=True)
  if options.render and probabilities is not None:
    result['animation'] = report.render_clip(
        clip.keypoints, clip.confidence, predictor.layout, os.path.join(output_dir, 'clip.gif'),
        routing_weights=routing, entity_names=predictor.entity_names, fps=options.fps,
        title=f'{clip.clip_id}: {result["top_k"][0]["class"]}')
  return result


def _write_windows_csv(path: str, starts, ends, window_person, predicted, ranked, probabilities,
                       routing, predictor: Predictor, fps: float) -> None:
  header = ['window', 'start_frame', 'end_frame', 'start_s', 'end_s', 'person_frames', 'status']
  for i in range(ranked.shape[1]):
    header += [f'top{i + 1}', f'top{i + 1}_prob']
  for e in predictor.entity_names:
    header += [f'{e}_st', f'{e}_ts']
  with atomic.atomic_path(path) as temporary, open(temporary, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for w in range(len(starts)):
      row = [w, int(starts[w]), int(ends[w]) - 1, f'{starts[w] / fps:.3f}', f'{ends[w] / fps:.3f}',
             int(window_person[w]), 'ok' if predicted[w] else NO_PERSON]
      for c in ranked[w]:
        row += ([predictor.class_names[c], f'{probabilities[w, c]:.6f}'] if predicted[w]
                else ['', ''])
      for a_st, a_ts in routing[w]:
        row += [f'{a_st:.6f}', f'{a_ts:.6f}'] if predicted[w] else ['', '']
      writer.writerow(row)


def _write_timeline_csv(path: str, labels: np.ndarray, class_names: Sequence[str],
                        fps: float) -> None:
  with atomic.atomic_path(path) as temporary, open(temporary, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['start_frame', 'end_frame', 'start_s', 'end_s', 'label'])
    for start, end, label in segments(labels):
      writer.writerow([start, end - 1, f'{start / fps:.3f}', f'{end / fps:.3f}',
                       label_name(label, class_names)])


def _shares_table(shares: dict[str, Any], total: int, fps: float) -> str:
  lines = [f'Predicted time per micro-action ({total} frames, {total / fps:.1f} s at {fps:g} fps):',
           f'  {"action":<28} {"frames":>8} {"seconds":>9} {"% of time":>10}']
  order = sorted(shares['frames'], key=lambda n: (n == NO_PERSON, -shares['frames'][n]))
  for name in order:
    frames = shares['frames'][name]
    if frames or name == NO_PERSON:
      lines.append(f'  {name:<28} {frames:>8d} {frames / fps:>9.1f} '
                   f'{shares["percent_of_time"][name]:>10.2f}')
  return '\n'.join(lines)


def _clip_table(result: dict[str, Any]) -> str:
  lines = [f'Clip-level prediction for {result["recording"]} ({result["num_frames"]} frames, '
           f'{result["empty_frames"]} without a person):']
  if result['status'] == NO_PERSON:
    return '\n'.join(lines + ['  no person detected: no prediction'])
  lines.append(f'  {"rank":<5} {"class":<28} {"probability":>11}')
  for i, entry in enumerate(result['top_k']):
    lines.append(f'  {i + 1:<5} {entry["class"]:<28} {entry["probability"]:>11.4f}')
  lines.append('Routing weights per body part (ST: spatial first, TS: temporal first):')
  lines.append(f'  {"entity":<14} {"ST":>6} {"TS":>6}')
  for entity, w in result['routing_weights'].items():
    lines.append(f'  {entity:<14} {w["st"]:>6.3f} {w["ts"]:>6.3f}')
  return '\n'.join(lines)


# ----------------------------------------------------------------------------- --mode=predict


def run_predict(config: RunConfig | None, workdir: str, input_path: str | None,
                output_dir: str | None = None, *, window: int | None = None,
                stride: int | None = None, batch_size: int | None = None,
                top_k: int | None = None, smoothing: int | None = None, fps: float | None = None,
                input_layout: str | None = None, background_class: str | None = None,
                render: bool | None = None, verbose: bool = True,
                compare_model: bool = True) -> list[dict[str, Any]]:
  """`--mode=predict`: the trained model of `workdir` on the pose data at `input_path`.

  Args:
    config: the command-line config: its `predict` section gives the options (None: the
      defaults); with compare_model, a model section that differs from the run's is noted.
    workdir: the trained run (its config.json defines the model).
    input_path: see `load_recordings`.
    output_dir: output folder (default `<workdir>/predict/<input name>`); with several
      recordings in the input, one sub-folder per recording.
    window, ...: `PredictOptions`; None takes config.predict's value or the default.
    verbose: print tables and progress.

  Returns:
    One summary per recording (see `predict_clip`).
  """
  if not input_path:
    raise InputError('--input is required for --mode=predict (an OpenPose JSON folder, a .npy '
                     '(T, V, C) array, an iMiGUE *_light_hand.csv or a PYSKL .pkl)')
  options = (config.predict if config is not None else PredictOptions()).with_overrides(
      window=window, stride=stride, batch_size=batch_size, top_k=top_k, smoothing=smoothing,
      fps=fps, input_layout=input_layout, background_class=background_class, render=render)
  run = RunDir(workdir)
  run.require_single_run('predict')
  trained = run_config(run, config if compare_model else None, verbose=verbose)
  options = options.resolved(trained.model.num_frames, trained.data.max_frames)
  # Input errors (layout, format) come before the slower checkpoint restore.
  clips = load_recordings(input_path, trained.model.layout, input_layout=options.input_layout)
  predictor = Predictor(restore_model(run, config=trained), batch_size=options.batch_size)
  name = pathlib.Path(input_path).name.split('.')[0] or 'input'
  output_dir = output_dir or os.path.join(workdir, 'predict', name)
  if verbose:
    print(f'Predicting with {workdir} (checkpoint step {predictor.step}, layout '
          f'{predictor.layout.name}, {len(predictor.class_names)} classes): window '
          f'{options.window}, stride {options.stride}, batch {predictor.batch_size}', flush=True)
  results = []
  with dirlock.output_folder(output_dir, 'predicting'):
    for clip in clips:
      where = output_dir if len(clips) == 1 else os.path.join(output_dir, clip.clip_id)
      results.append(predict_clip(predictor, clip, options, where, verbose=verbose))
  return results

