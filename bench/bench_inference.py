"""Inference speed of an exported SavedModel on CPU.

  python bench/bench_inference.py [--saved_model=savedmodel/NAME/N] [--repeats=20]

Times ``serving_default`` (undersampled 640 x 368 single-coil k-space + mask in, the
320 x 320 reconstruction out, everything inside the graph) at batch 1 (latency per
slice) and batch 16 (throughput). Without --saved_model it exports the demo's networks
(configs/demo.cfg sizes, untrained weights: speed does not depend on them) to a
temporary directory first.
"""

import os
import statistics
import tempfile
import time

from absl import flags

from tfmri import cli

cli.quiet_tensorflow()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfmri.data import masks  # noqa: E402
from tfmri.models import pix2pix  # noqa: E402
from tfmri.serving import export  # noqa: E402
from tfmri.training import checkpoints  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None, "An exported model version (default: export the demo's).")
flags.DEFINE_integer("repeats", 20, "Timed calls per batch size (after 3 warm-up calls).")

DEMO = pix2pix.ModelConfig(
    depth=5, base_filters=16, dropout=0.0, norm="instance", d_base_filters=16, d_norm="instance"
)


def export_demo(workdir):
    model = pix2pix.ReconstructionModel(DEMO)
    model_dir = os.path.join(workdir, "run")
    os.makedirs(model_dir)
    checkpoints.write_model_config(model_dir, model)
    tf.train.Checkpoint(**checkpoints.trackables(model)).save(os.path.join(model_dir, "ckpt"))
    target, _ = export.export(model_dir, None, os.path.join(workdir, "savedmodel"), "demo")
    return target


def time_calls(signature, batch):
    rng = np.random.default_rng(0)
    shape = (batch, 640, 368)
    mask, _ = masks.MaskFunction(masks.MaskSpec("random", (0.04,), (8,)))(368, seed=(1,))
    inputs = {
        "kspace_real": tf.constant(rng.standard_normal(shape).astype(np.float32) * 1e-4 * mask),
        "kspace_imag": tf.constant(rng.standard_normal(shape).astype(np.float32) * 1e-4 * mask),
        "mask": tf.constant(np.tile(mask, (batch, 1)).astype(np.float32)),
    }
    for _ in range(3):
        signature(**inputs)["reconstruction"].numpy()
    seconds = []
    for _ in range(FLAGS.repeats):
        started = time.monotonic()
        signature(**inputs)["reconstruction"].numpy()
        seconds.append(time.monotonic() - started)
    return statistics.median(seconds), min(seconds), max(seconds)


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as workdir:
        path = FLAGS.saved_model or export_demo(workdir)
        signature = tf.saved_model.load(path).signatures["serving_default"]
        single = time_calls(signature, 1)
        batch = time_calls(signature, 16)
    print(
        f"SavedModel {FLAGS.saved_model or 'demo networks (configs/demo.cfg sizes)'}, 2 CPU cores"
    )
    print(
        f"batch 1:  {single[0] * 1000:7.1f} ms per slice (median of {FLAGS.repeats}; "
        f"{single[1] * 1000:.1f}-{single[2] * 1000:.1f})"
    )
    print(
        f"batch 16: {16 / batch[0]:7.1f} slices/s ({batch[0] * 1000:.0f} ms per call, "
        f"{16 / batch[0] * single[0]:.2f} x batch 1)"
    )


if __name__ == "__main__":
    cli.run(main)
