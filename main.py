"""Micro-DualNet: train, evaluate, predict, export, ensemble, prepare data.

  python main.py --config=configs/synthetic.py --workdir=/tmp/mdn_synthetic
  python main.py --mode=eval --workdir=/tmp/mdn_synthetic
  python main.py --mode=prepare --config=configs/imigue.py --config.data.manual_dir=<dir>
  python main.py --mode=ensemble --config=configs/nwucla.py --workdir=<out> --input=<run_a>,<run_b>

Any config value can be overridden: --config.model.width=128 --config.loss.mac=none. A bad config
(a missing file, an unknown key, a bad value) is one line on stderr and exit status 2, before
anything is written.
"""

import os

from micro_dualnet_jax import interrupts, malloc_tuning

if __name__ == '__main__':
  malloc_tuning.reexec_with_tuned_malloc()   # before jax loads (micro_dualnet_jax/malloc_tuning.py)
  interrupts.exit_on_keyboard_interrupt()   # Ctrl-C: one line and exit status 130 (docs/workdir.md)

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app, flags
from ml_collections import config_flags

from micro_dualnet_jax import cli
from micro_dualnet_jax.config import RunConfig
from micro_dualnet_jax.errors import UserError

FLAGS = flags.FLAGS
# The default config is found beside main.py, so main.py runs from any folder.
_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs',
                               'synthetic.py')
config_flags.DEFINE_config_file('config', _DEFAULT_CONFIG, 'Run configuration file (default: '
                                'configs/synthetic.py).', lock_config=True)
flags.DEFINE_string('workdir', None, 'Work directory: checkpoints, logs, metrics, plots.')
flags.DEFINE_enum('mode', 'train', cli.MODES, 'What to do.')
flags.DEFINE_string('input', None, 'predict: pose data to run the trained model on (OpenPose '
                    'JSON folder, .npy (T, V, C), iMiGUE raw CSV or PYSKL pickle). ensemble: '
                    'comma-separated trained work directories, each optionally =weight.')
flags.DEFINE_string('output', None, 'predict/export/eval: output folder (default: under '
                    '--workdir; eval: --workdir itself).')
flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'], 'eval: the best checkpoint (by '
                  'config.best_metric) or the latest one (the final step of a finished run).')
flags.DEFINE_enum('export_format', 'jax', ['jax', 'onnx'], 'export: jax.export artifacts '
                  '(<workdir>/export) or an ONNX model for onnxruntime (<workdir>/export_onnx; '
                  'needs pip install -r requirements-onnx.txt).')
flags.DEFINE_string('fit_weights_on', None, 'ensemble: comma-separated held-out runs, one per '
                    '--input member in the same order, scored on a split the ensemble is not; '
                    'the stream weights are fitted on them (micro_dualnet_jax/ensemble.py).')


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with the config file loaded and its overrides applied here: a missing
  file, an unknown key or a bad value is one line and exit status 2, not a traceback."""
  try:
    remaining = FLAGS(argv)
    FLAGS.config.to_dict()   # a file that failed to load raises here, not in the middle of a run
  except Exception as error:  # pylint: disable=broad-except
    message = str(error).replace('\\n', '\n').replace("\\'", "'")
    if 'earlier failure to load: ' in message:
      message = message.split('earlier failure to load: ', 1)[1]
    lines = [line.strip() for line in message.strip('\'"').splitlines() if line.strip()]
    where = '' if isinstance(error, flags.Error) and 'config' not in message else '--config: '
    cli.fail(f'{where}{" ".join(lines)[:500]}')
  return remaining


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments: {argv[1:]}')
  overrides = config_flags.get_override_values(FLAGS['config'])
  try:   # the typed configuration, built once here: nothing below sees the ConfigDict
    config = RunConfig.from_config_dict(FLAGS.config)
  except UserError as error:
    cli.fail(str(error))
  cli.run(FLAGS.mode, config, FLAGS.workdir, input_path=FLAGS.input,
          output_dir=FLAGS.output, checkpoint=FLAGS.checkpoint,
          config_given=FLAGS['config'].present > 0 or bool(overrides), overrides=overrides,
          fit_weights_on=FLAGS.fit_weights_on, export_format=FLAGS.export_format)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
