"""Replays the planted bugs of tests/README.md: each one in a scratch copy of the repository, with
the tests that must catch it.

    python tests/planted_bugs.py            # every bug
    python tests/planted_bugs.py 3 7b       # some of them

For each bug: the repository's tracked files are copied to a temporary folder (the working tree
is never edited), the one edit is made there, the bug's tests run there with pytest, and one line
says whether they failed as they must ('caught'), passed ('MISSED'), or the edit no longer
applies to the code ('edit does not apply': the code moved; update the entry). Exit status 1
when a bug is missed or does not apply.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Bug:
  name: str
  what: str
  path: str
  old: str
  new: str
  tests: tuple[str, ...]
  after: str | None = None      # the edit applies to the first `old` after this text


BUGS = (
    Bug('1', 'the TS path built Spatial -> Temporal, the same computation as the ST path',
        'micro_dualnet_jax/models/micro_dualnet.py',
        "DualPathBranch.from_config(c, 'time', rngs=rngs)",
        "DualPathBranch.from_config(c, 'entity', rngs=rngs)",
        ('tests/test_model.py::test_each_path_is_its_two_stacks_composed_in_its_own_order',)),
    Bug('2', 'attention scaled by 1/sqrt(D) instead of 1/sqrt(D/h)',
        'micro_dualnet_jax/models/transformer.py', 'q = (q * (d // h) ** -0.5)',
        'q = (q * d ** -0.5)',
        ('tests/test_model.py::test_attention_of_two_tokens_equals_the_softmax_by_hand',)),
    Bug('3', "kinect20's lower_body one joint short: joint 19 in no entity",
        'micro_dualnet_jax/skeleton/layouts.py', "'lower_body': _span(12, 19)}),",
        "'lower_body': _span(12, 18)}),",
        ('tests/test_skeleton.py::test_every_joint_is_in_an_entity_and_every_limb_joint_in_its_own',),
        after="name='kinect20'"),
    Bug('4', 'the dropout mask inverted: keeps `rate` instead of 1 - rate',
        'micro_dualnet_jax/models/transformer.py', 'return x >= jnp.uint32(',
        'return x < jnp.uint32(',
        ('tests/test_model.py::test_dropout_keeps_one_minus_rate_of_the_elements_scaled_up',)),
    Bug('5', 'total_loss drops label smoothing', 'micro_dualnet_jax/losses.py',
        'ce = cross_entropy(logits, labels, label_smoothing=config.label_smoothing, '
        'weights=weights)', 'ce = cross_entropy(logits, labels, weights=weights)',
        ('tests/test_losses.py::test_total_loss_smooths_the_labels_by_hand',)),
    Bug('6', 'test-time routing also averaged over the mirrored views', 'micro_dualnet_jax/steps.py',
        "        if not mirrored:\n          routing.append(aux['routing_weights'])",
        "        routing.append(aux['routing_weights'])",
        ('tests/test_steps.py::test_test_time_routing_is_the_mean_over_the_unmirrored_views',)),
    Bug('7', 'the routing figure draws the TS share as ST (its data)', 'micro_dualnet_jax/report.py',
        'st_share = weights[..., 0]', 'st_share = weights[..., 1]',
        ('tests/test_report.py::test_routing_figure_shows_the_st_share_of_each_entity_and_class',)),
    Bug('7b', 'the routing figure draws the TS share as ST (its bars)',
        'micro_dualnet_jax/report.py',
        "ax_bar.bar(positions, mean_st, color='tab:blue', label='ST (spatial first)')\n"
        '  ax_bar.bar(positions, 1.0 - mean_st, bottom=mean_st,',
        "ax_bar.bar(positions, 1.0 - mean_st, color='tab:blue', label='ST (spatial first)')\n"
        '  ax_bar.bar(positions, mean_st, bottom=1.0 - mean_st,',
        ('tests/test_report.py::test_routing_figure_shows_the_st_share_of_each_entity_and_class',)),
    Bug('8', 'every test-time clip reads the same frames (the eval step)',
        'micro_dualnet_jax/steps.py', 'phase=(2 * clip + 1, 2 * views.num_clips)', 'phase=(1, 2)',
        ('tests/test_steps.py::test_test_time_logits_are_the_mean_over_clips_reading_their_own_frames',)),
    Bug('8b', 'every test-time clip reads the same frames (frame_indices ignores the phase)',
        'micro_dualnet_jax/pipeline/augment.py',
        'indices = start[:, None] + ((q * t + p) * length[:, None]) // (q * m)',
        'indices = start[:, None] + ((2 * t + 1) * length[:, None]) // (2 * m)',
        ('tests/test_augment.py::test_phase_moves_the_read_point_within_each_segment',
         'tests/test_steps.py::test_test_time_logits_are_the_mean_over_clips_reading_their_own_frames')),
    Bug('9', 'gradient accumulation sums the micro-batch gradients instead of averaging',
        'micro_dualnet_jax/steps.py',
        'grads, parts = jax.tree.map(lambda x: x / accum, (grads, parts))',
        'parts = jax.tree.map(lambda x: x / accum, parts)',
        ('tests/test_steps.py::test_gradient_accumulation_averages_the_micro_batch_gradients',)),
    Bug('10', "every seed of a multi-seed run reads seed 0's data order (host loader)",
        'micro_dualnet_jax/train.py', "'train', seed=s) for s in self.seeds]",
        "'train') for s in self.seeds]",
        ('tests/test_loop.py::test_each_seed_of_a_multi_seed_run_reads_the_data_order_of_its_run_alone',)),
    Bug('10b', "every seed of a multi-seed run reads seed 0's data order (data on the devices)",
        'micro_dualnet_jax/train.py', 'np.asarray(self.seeds, np.int32), self.mesh)',
        'np.zeros(len(self.seeds), np.int32), self.mesh)',
        ('tests/test_loop.py::test_each_seed_of_a_multi_seed_run_reads_the_data_order_of_its_run_alone',)),
    Bug('11', 'a resumed run restarts its data at step 0 (host loader)',
        'micro_dualnet_jax/train.py', 's.loader.train_batches(self.start_step) for s in',
        's.loader.train_batches() for s in',
        ('tests/test_loop.py::test_a_resumed_run_reads_the_batches_the_uninterrupted_run_read',)),
    Bug('12', 'the best checkpoint kept on a lower score', 'micro_dualnet_jax/train.py',
        'return not best or scalars[metric] > best.get(metric, -1)',
        'return not best or scalars[metric] < best.get(metric, -1)',
        ('tests/test_loop.py::test_the_best_checkpoint_holds_the_first_of_the_highest_evaluations',
         'tests/test_loop.py::test_which_evaluations_become_the_best')),
    Bug('12b', 'every evaluation becomes the best one', 'micro_dualnet_jax/train.py',
        'if result.labelled and improves_on_best(scalars, s.best, best_metric):',
        'if result.labelled:',
        ('tests/test_loop.py::test_the_best_checkpoint_holds_the_first_of_the_highest_evaluations',)),
    Bug('13', 'prediction rows named after the wrong clips after release-order sorting',
        'micro_dualnet_jax/evaluate.py',
        'labels=result.labels[order], indices=result.indices[order])',
        'labels=result.labels[order], indices=result.indices)',
        ('tests/test_evaluate.py',)),
    Bug('13b', 'clip names taken before the rows are sorted into release order',
        'micro_dualnet_jax/evaluate.py',
        '  result = in_release_order(result, splits)\n'
        '  probs = metrics_lib.softmax(result.logits)\n'
        '  clip_ids = [splits.clip_id(splits.eval, i) for i in result.indices]',
        '  clip_ids = [splits.clip_id(splits.eval, i) for i in result.indices]\n'
        '  result = in_release_order(result, splits)\n'
        '  probs = metrics_lib.softmax(result.logits)',
        ('tests/test_evaluate.py::test_prediction_files_name_each_row_after_its_own_clip',)),
    Bug('14', 'a non-finite step updates the parameters', 'micro_dualnet_jax/steps.py',
        'keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)',
        'keep = lambda new, old: new',
        ('tests/test_steps.py::test_a_non_finite_step_changes_nothing_but_the_counters',)),
    Bug('15', 'the loop never stops on a non-finite step', 'micro_dualnet_jax/train.py',
        '    if nonfinite.any():', '    if False:',
        ('tests/test_loop.py::test_a_non_finite_step_stops_the_run_before_its_checkpoint',)),
    Bug('16', 'a host callback in the train step (CPU only)', 'micro_dualnet_jax/steps.py',
        "    key = jax.random.fold_in(jax.random.wrap_key_data(state['rng']), state['step'])",
        "    jax.debug.print('step {}', state['step'])\n"
        "    key = jax.random.fold_in(jax.random.wrap_key_data(state['rng']), state['step'])",
        ('tests/test_lowering.py::test_the_train_step_of_several_seeds_lowers_for_tpu_and_cuda',)),
)


def _copy_repository(target: pathlib.Path) -> None:
  """The tracked files, as they are in the working tree (uncommitted edits included)."""
  files = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.split('\0')
  for name in filter(None, files):
    source = ROOT / name
    if source.is_file():
      (target / name).parent.mkdir(parents=True, exist_ok=True)
      shutil.copy2(source, target / name)


def replay(bug: Bug) -> tuple[str, str]:
  """(verdict, the first lines of pytest's failure report) for one bug."""
  with tempfile.TemporaryDirectory(prefix=f'planted_{bug.name}_') as scratch:
    scratch = pathlib.Path(scratch)
    _copy_repository(scratch)
    file = scratch / bug.path
    text = file.read_text()
    start = text.find(bug.after) if bug.after else 0
    at = text.find(bug.old, max(start, 0))
    if start < 0 or at < 0 or (bug.after is None and text.count(bug.old) != 1):
      return 'edit does not apply', ''
    file.write_text(text[:at] + bug.new + text[at + len(bug.old):])
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    run = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                          *bug.tests], cwd=scratch, env=env, capture_output=True, text=True,
                         check=False)
  failure = [line for line in run.stdout.splitlines() if line.startswith(('E ', 'FAILED'))]
  if run.returncode == 1 and failure:
    return 'caught', '\n'.join(failure[:3])
  if run.returncode == 0:
    return 'MISSED', ''
  return f'pytest exit {run.returncode}', run.stdout[-2000:] + run.stderr[-2000:]


def main(names: list[str]) -> int:
  chosen = [b for b in BUGS if not names or b.name in names]
  unknown = set(names) - {b.name for b in BUGS}
  if unknown:
    print(f'unknown bugs {sorted(unknown)}; known: {[b.name for b in BUGS]}', file=sys.stderr)
    return 2
  bad = 0
  for bug in chosen:
    verdict, detail = replay(bug)
    bad += verdict != 'caught'
    print(f'{bug.name:>4}  {verdict:<20} {bug.what}', flush=True)
    for line in detail.splitlines():
      print(f'      {line}', flush=True)
  return 1 if bad else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
