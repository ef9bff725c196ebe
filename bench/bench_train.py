"""Training throughput of the pix2pix train_step on CPU.

  python bench/bench_train.py [--steps=10]

Each case runs in its own process (the CPU split and the precision policy are set
before TensorFlow starts) on random 1-channel batches held in memory, so that only
the model is timed:

* the demo's networks (configs/demo.cfg) on 320 x 320 slices, batch 8: float32 and
  mixed_bfloat16, on 1 replica and on 2 (the CPU split into 2 logical devices,
  MirroredStrategy), and float32 on 2 worker processes on this machine
  (MultiWorkerMirroredStrategy, TF_CONFIG as tools/launch_local_cluster.py writes it),
  in slices/s;
* the pix2pix reference setting: unet_256 generator (8 levels, 64 filters, batch
  norm, dropout 0.5) + 70 x 70 PatchGAN, 256 x 256, batch 1, float32, in
  iterations/s, next to the PyTorch reference implementation's 1.18 it/s on these
  2-core machines (target: 1.5 x that).
"""

import json
import os
import subprocess
import sys
import time

from absl import flags

from tfmri import cli

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 10, "Timed steps per case (after 3 warm-up steps).")
flags.DEFINE_string("case", None, "Internal: run one case in this process and print JSON.")

PYTORCH_REFERENCE_IT_S = 1.18
# Two processes on 127.0.0.1 (tools/launch_local_cluster.py's TF_CONFIG), one replica
# each, MultiWorkerMirroredStrategy.
WORKERS = "2 workers"
DEMO = dict(
    image_size=320,
    depth=5,
    base_filters=16,
    dropout=0.0,
    norm="instance",
    discriminator="patch",
    d_base_filters=16,
    d_norm="instance",
)
REFERENCE = dict(
    image_size=256,
    depth=8,
    base_filters=64,
    dropout=0.5,
    norm="batch",
    residual=False,
    output_activation="tanh",
    discriminator="patch",
    n_layers=3,
    d_base_filters=64,
    d_norm="batch",
)
CASES = {
    "demo float32, 1 replica": (DEMO, 8, "float32", 1),
    "demo float32, 2 replicas": (DEMO, 8, "float32", 2),
    "demo float32, 2 workers": (DEMO, 8, "float32", WORKERS),
    "demo mixed_bfloat16, 1 replica": (DEMO, 8, "mixed_bfloat16", 1),
    "demo mixed_bfloat16, 2 replicas": (DEMO, 8, "mixed_bfloat16", 2),
    "reference float32, batch 1": (REFERENCE, 1, "float32", 1),
    "reference mixed_bfloat16, batch 1": (REFERENCE, 1, "mixed_bfloat16", 1),
}


def run_case(name):
    cli.quiet_tensorflow()
    import keras
    import numpy as np
    import tensorflow as tf

    from tfmri import runtime
    from tfmri.models import pix2pix

    network, batch, precision, replicas = CASES[name]
    if replicas == WORKERS:
        strategy = runtime.configure(0, "multi_worker", precision)
    else:
        strategy = runtime.configure(replicas, "mirrored" if replicas > 1 else "default", precision)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = pix2pix.Pix2Pix(pix2pix.ModelConfig(**network))
        model.compile(
            *[pix2pix.make_optimizer(2e-4, 0.5, 0.999, precision, n) for n in ("adam_G", "adam_D")]
        )
    size = network["image_size"]
    rng = np.random.default_rng(0)
    target = rng.standard_normal((batch, size, size, 1)).astype(np.float32)
    inputs = {
        "zero_filled": (target + rng.standard_normal(target.shape)).astype(np.float32),
        "mean": np.zeros(batch, np.float32),
        "std": np.ones(batch, np.float32),
        "max_value": np.full(batch, 6.0, np.float32),
    }
    data = tf.data.Dataset.from_tensors((inputs, target)).repeat()
    fixed = tf.data.Options()  # as tfmri.train's pipeline: no tf.data autotuner
    fixed.autotune.enabled = False
    # Every worker reads the same batches (they are random numbers anyway).
    fixed.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    data = data.with_options(fixed)
    model.fit(data, epochs=1, steps_per_epoch=3, verbose=0, shuffle=False)  # trace, warm up
    started = time.monotonic()
    model.fit(data, epochs=1, steps_per_epoch=FLAGS.steps, verbose=0, shuffle=False)
    seconds = (time.monotonic() - started) / FLAGS.steps
    print(json.dumps({"case": name, "seconds_per_step": seconds, "batch": batch}))


def run_workers(command, env, count):
    """Runs ``command`` as ``count`` local workers; returns the chief's stdout."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools"))
    import launch_local_cluster

    addresses = [f"127.0.0.1:{port}" for port in launch_local_cluster.free_ports(count)]
    processes = [
        subprocess.Popen(
            command,
            env=dict(env, TF_CONFIG=launch_local_cluster.tf_config(addresses, index)),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for index in range(count)
    ]
    outputs = [process.communicate()[0] for process in processes]
    if any(process.returncode for process in processes):
        raise RuntimeError(f"a worker failed: {[p.returncode for p in processes]}")
    return outputs[0]


def main(argv):
    del argv
    if FLAGS.case:
        run_case(FLAGS.case)
        return
    results = {}
    for name in CASES:
        command = [sys.executable, __file__, f"--case={name}", f"--steps={FLAGS.steps}"]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        if CASES[name][3] == WORKERS:
            stdout = run_workers(command, env, 2)
        else:
            output = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
            stdout = output.stdout
        results[name] = json.loads(stdout.strip().splitlines()[-1])
        print(f"  {name}: {results[name]['seconds_per_step']:.3f} s/step", flush=True)

    print(f"\ntraining throughput, {FLAGS.steps} timed steps per case, 2 CPU cores")
    baseline = None
    for name, result in results.items():
        slices = result["batch"] / result["seconds_per_step"]
        if name.startswith("demo"):
            baseline = baseline or slices
            print(
                f"{name:<36}{slices:8.1f} slices/s  ({slices / baseline:.2f} x float32, 1 replica)"
            )
        else:
            iterations = 1.0 / result["seconds_per_step"]
            print(
                f"{name:<36}{iterations:8.2f} it/s      "
                f"({iterations / PYTORCH_REFERENCE_IT_S:.2f} x PyTorch's {PYTORCH_REFERENCE_IT_S} it/s;"
                " target 1.5 x)"
            )


if __name__ == "__main__":
    cli.run(main)
