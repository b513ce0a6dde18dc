"""Micro-DualNet: train, evaluate, prepare data.

  python main.py --config=configs/synthetic.py --workdir=/tmp/mdn_synthetic
  python main.py --mode=eval --config=configs/synthetic.py --workdir=/tmp/mdn_synthetic
  python main.py --mode=prepare --config=configs/imigue.py --config.data.manual_dir=<dir>
  python main.py --mode=ensemble --config=configs/nwucla.py --workdir=<out> --input=<run_a>,<run_b>

Any config value can be overridden: --config.model.width=128 --config.loss.mac=none.
"""

from micro_dualnet_jax import hostenv

if __name__ == '__main__':
  hostenv.reexec_with_tuned_malloc()  # before jax loads; see micro_dualnet_jax/hostenv.py

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app, flags
from ml_collections import config_flags

from micro_dualnet_jax import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', 'configs/synthetic.py', 'Run configuration file.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Work directory: checkpoints, logs, metrics, plots.')
flags.DEFINE_enum('mode', 'train', cli.MODES, 'What to do.')
flags.DEFINE_string('input', None, 'predict: pose data to run the trained model on (OpenPose '
                    'JSON folder, .npy (T, V, C), iMiGUE raw CSV or PYSKL pickle). ensemble: '
                    'comma-separated trained work directories, each optionally =weight.')
flags.DEFINE_string('output', None, 'predict/export/eval: output folder (default: under '
                    '--workdir; eval: --workdir itself).')
flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'], 'eval: the best checkpoint (by '
                  'config.best_metric) or the latest one (the final step of a finished run).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.run(FLAGS.mode, FLAGS.config, FLAGS.workdir, input_path=FLAGS.input,
          output_dir=FLAGS.output, checkpoint=FLAGS.checkpoint)


if __name__ == '__main__':
  app.run(main)
