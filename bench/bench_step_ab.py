"""The reference train step with and without one of tfmri's fast paths, in one process.

  python bench/bench_step_ab.py [--path=winograd] [--blocks=16] [--steps_per_block=5]

Builds the pix2pix reference setting (bench_train.py's REFERENCE: unet_256 + 70 x 70
PatchGAN, 256 x 256, batch 1, float32) twice in one process, once with the fast path
and once without it, and times their train steps in alternating blocks (the order
flips every block). Both see the same drift of a shared machine, which between
separate runs minutes apart is larger than the effects measured here. Fast paths:

* winograd: the PatchGAN's wide stride-1 convolution by Winograd's algorithm
  (networks.WINOGRAD_MIN_CHANNELS; without: a direct convolution);
* matmul: the U-Net's 4 x 4 stride-2 layers on maps of 8 x 8 and below as matrix
  products (networks.MATMUL_MAX_SIDE; without: oneDNN's convolutions).

Prints each variant's median and fastest step and the ratio of the medians.
"""

import statistics
import time

from absl import flags

from tfmri import cli

cli.quiet_tensorflow()

import tensorflow as tf  # noqa: E402
from bench_train import REFERENCE, compiled_model, random_batch  # noqa: E402

from tfmri import runtime  # noqa: E402
from tfmri.models import networks  # noqa: E402

FLAGS = flags.FLAGS
# path: (setting in networks, its value without the fast path)
PATHS = {"winograd": ("WINOGRAD_MIN_CHANNELS", 10**9), "matmul": ("MATMUL_MAX_SIDE", 0)}
flags.DEFINE_enum("path", "winograd", list(PATHS), "The fast path to time with and without.")
flags.DEFINE_integer("blocks", 16, "Alternating blocks of steps per variant.")
flags.DEFINE_integer("steps_per_block", 5, "Timed steps in each block.")


def build_step(setting, value):
    """The reference model's train step with ``networks.<setting> = value``."""
    default = getattr(networks, setting)
    setattr(networks, setting, value)
    try:
        model = compiled_model(REFERENCE, "float32")
    finally:
        setattr(networks, setting, default)
    return tf.function(model.train_step)


def main(argv):
    del argv
    if FLAGS.blocks < 1 or FLAGS.steps_per_block < 1:
        cli.fail("--blocks and --steps_per_block: use 1 or more")
    runtime.configure(1, "default", "float32")
    setting, without = PATHS[FLAGS.path]
    steps = {
        f"with {FLAGS.path}": build_step(setting, getattr(networks, setting)),
        f"without {FLAGS.path}": build_step(setting, without),
    }
    batch = tf.nest.map_structure(tf.constant, random_batch(REFERENCE, 1))
    for step in steps.values():  # trace and warm up
        for _ in range(3):
            float(step(batch)["G_L1"])
    seconds = {name: [] for name in steps}
    names = list(steps)
    for block in range(FLAGS.blocks):
        for name in names if block % 2 == 0 else names[::-1]:
            for _ in range(FLAGS.steps_per_block):
                start = time.perf_counter()
                float(steps[name](batch)["G_L1"])  # waits for the step
                seconds[name].append(time.perf_counter() - start)
    print(
        f"reference step, float32, batch 1, {FLAGS.blocks} alternating blocks of "
        f"{FLAGS.steps_per_block} steps per variant, one process"
    )
    for name, times in seconds.items():
        print(
            f"  {name:<20} median {statistics.median(times):.3f} s/step, fastest {min(times):.3f}"
        )
    with_path, without_path = (statistics.median(seconds[name]) for name in names)
    print(f"  {FLAGS.path}: the step takes {with_path / without_path:.3f} x as long with it")


if __name__ == "__main__":
    cli.run(main)
