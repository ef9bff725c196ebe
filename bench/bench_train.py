"""Training throughput of the pix2pix train_step on CPU.

  python bench/bench_train.py [--steps=20] [--repeats=1] [--only=reference]

Each case runs in its own process (the CPU split and the precision policy are set
before TensorFlow starts) on random 1-channel batches held in memory, so that only
the model is timed:

* the demo's networks (configs/demo.cfg) on 320 x 320 slices, batch 8: float32 and
  mixed_bfloat16, on 1 replica and on 2 (the CPU split into 2 logical devices,
  MirroredStrategy), and float32 on 2 worker processes on this machine
  (MultiWorkerMirroredStrategy, TF_CONFIG as tools/launch_local_cluster.py writes it),
  in slices/s;
* the demo's cascade generator (configs/demo_cascade.cfg), the cascade started from
  CS-TV (configs/demo_cs_cascade.cfg) and the demo's U-Net with data consistency, as
  configs/demo.cfg trains it, side by side (float32; the cascade also in
  mixed_bfloat16), on batches with measured k-space 368 columns wide;
* the pix2pix reference setting: unet_256 generator (8 levels, 64 filters, batch
  norm, dropout 0.5) + 70 x 70 PatchGAN, 256 x 256, batch 1, float32, in
  iterations/s, and the same step in PyTorch (bench/torch_pix2pix.py, written from
  the published architecture) in the same run, alternating with tfmri's case in every
  repeat: the ratio is of the two medians measured here (target 1.5 x). Without torch
  installed (pip install -e ".[bench]") the PyTorch case is skipped and no ratio is
  printed.

For the reference setting the bench also prints the work of one step (the
floating-point operations of the convolutions in the generator and discriminator
passes of a pix2pix step, ``tfmri.models.pix2pix.step_conv_flops``; the PyTorch step
makes the same), the rate each system reaches on it, and what these cores reach on a
large float32 matrix product (NumPy, 2048 x 2048), measured in every repeat: how far
the step is from the cores' own speed, and what rate the 1.5 x target asks for. The
operations are those of direct convolution: tfmri computes the PatchGAN's widest
layer by Winograd's algorithm (tfmri.models.winograd), with fewer multiplies, so its
rate says what the step is worth per second, not what the cores execute.

Steps are timed one by one (a callback reads each step's logs, as the progress bar
of tfmri.train does) and the median is reported: a fit() call's start and end (its
iterator's teardown took up to 5 s here) are not training steps. The minor page
faults per step are printed too (tfmri.runtime.keep_freed_memory).
"""

import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import flags

from tfmri import cli

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 20, "Timed steps per case (after 3 warm-up steps).")
flags.DEFINE_integer(
    "repeats", 1, "Runs of each case (fresh processes); the figures are over the runs' medians."
)
flags.DEFINE_multi_string("only", None, "Run only the cases whose name starts with this.")
flags.DEFINE_string("case", None, "Internal: run one case in this process and print JSON.")

PYTORCH = "PyTorch reference float32, batch 1"
TORCH_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_pix2pix.py")
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
# The demo's cascade generator (configs/demo_cascade.cfg): 5 stages of a depth-3,
# 16-filter U-Net on the complex image, data consistency after each; k-space 368 wide.
DEMO_DC = dict(DEMO, data_consistency=True)  # configs/demo.cfg trains with it
CASCADE = dict(DEMO, generator="cascade", cascades=5, depth=3, data_consistency=True)
# The cascade started from CS-TV (configs/demo_cs_cascade.cfg, pix2pix step here): 2 stages
# correcting 100 iterations of CS-TV (lambda 0.02, what auto chose at 8x on the demo data).
CS_CASCADE = dict(CASCADE, cascades=2, cascade_start="cs_tv", start_cs_lambda=0.02)
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
    "demo data-consistency float32, 1 replica": (DEMO_DC, 8, "float32", 1),
    "demo cascade float32, 1 replica": (CASCADE, 8, "float32", 1),
    "demo cascade mixed_bfloat16, 1 replica": (CASCADE, 8, "mixed_bfloat16", 1),
    "demo cs_cascade float32, 1 replica": (CS_CASCADE, 8, "float32", 1),
    "reference float32, batch 1": (REFERENCE, 1, "float32", 1),
    PYTORCH: (None, 1, "float32", 1),
    "reference mixed_bfloat16, batch 1": (REFERENCE, 1, "mixed_bfloat16", 1),
}


def torch_installed():
    return importlib.util.find_spec("torch") is not None


def run_case(name):
    cli.quiet_tensorflow()
    import tensorflow as tf

    from tfmri import runtime
    from tfmri.models import pix2pix

    network, batch, precision, replicas = CASES[name]
    if replicas == WORKERS:
        strategy = runtime.configure(0, "multi_worker", precision)
    else:
        strategy = runtime.configure(replicas, "mirrored" if replicas > 1 else "default", precision)
    with strategy.scope():
        model = compiled_model(network, precision)
    inputs, target = random_batch(network, batch)
    data = tf.data.Dataset.from_tensors((inputs, target)).repeat()
    fixed = tf.data.Options()  # as tfmri.train's pipeline: no tf.data autotuner
    fixed.autotune.enabled = False
    # Every worker reads the same batches (they are random numbers anyway).
    fixed.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    data = data.with_options(fixed)
    model.fit(data, epochs=1, steps_per_epoch=3, verbose=0, shuffle=False)  # trace, warm up
    clock = step_clock()
    model.fit(data, epochs=1, steps_per_epoch=FLAGS.steps + 1, verbose=0, callbacks=[clock])
    cost = {"parameters": model.generator.count_params(), "gflops": generator_gflops(model)}
    if network is REFERENCE:
        work = pix2pix.step_conv_flops(model)
        cost["step_gflops"] = {name: flops / 1e9 for name, flops in work.items()}
    print(json.dumps({"case": name, **clock.summary(), "batch": batch, **cost}))


def compiled_model(network, precision):
    """The pix2pix model of ``network`` (a ModelConfig dict), seeded and compiled with
    pix2pix's Adam settings, in the current distribution strategy's scope."""
    import keras

    from tfmri.models import pix2pix

    keras.utils.set_random_seed(0)
    model = pix2pix.ReconstructionModel(pix2pix.ModelConfig(**network))
    optimizers = [
        pix2pix.make_optimizer(2e-4, 0.5, 0.999, precision, n) for n in ("adam_G", "adam_D")
    ]
    model.compile(*optimizers)
    return model


def random_batch(network, batch):
    """A fixed random batch for ``network``: (inputs as the pipeline yields them,
    target), NumPy; with measured k-space 368 columns wide for data consistency."""
    import numpy as np

    size = network["image_size"]
    rng = np.random.default_rng(0)
    target = rng.standard_normal((batch, size, size, 1)).astype(np.float32)
    inputs = {
        "zero_filled": (target + rng.standard_normal(target.shape)).astype(np.float32),
        "mean": np.zeros(batch, np.float32),
        "std": np.ones(batch, np.float32),
        "scale": np.ones(batch, np.float32),
        "max_value": np.full(batch, 6.0, np.float32),
    }
    if network.get("data_consistency"):
        width = 368  # fastMRI knee k-space width
        shape = (batch, size, width)
        measured = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
        mask = (rng.random((batch, width)) < 0.125).astype(np.float32)
        inputs["measured"] = (measured * mask[:, None, :]).astype(np.complex64)
        inputs["mask"] = mask
    return inputs, target


def generator_gflops(model):
    """GFLOPs of the generator's convolutions per slice (tfmri.models.networks.conv_flops)."""
    from tfmri.models import networks

    generator = model.generator  # a cascade counts its stages, a U-Net its own layers
    if hasattr(generator, "conv_flops"):
        return generator.conv_flops() / 1e9
    return networks.conv_flops(generator) / 1e9


def gemm_gflops(size=2048, products=10):
    """What these cores reach on a float32 matrix product: NumPy (its BLAS on every
    core), ``size`` x ``size``, median of ``products`` after one warm-up."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    a @ a
    seconds = []
    for _ in range(products):
        start = time.perf_counter()
        a @ a
        seconds.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(seconds) / 1e9


def step_clock():
    """A Keras callback that times each step from the end of the one before."""
    import keras

    class StepClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends, self.faults = [], []

        def on_train_batch_end(self, batch, logs=None):
            float(next(iter(logs.values())))  # waits for the step to finish
            self.ends.append(time.monotonic())
            self.faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)

        def summary(self):
            steps = [end - start for start, end in zip(self.ends, self.ends[1:])]
            return {
                "seconds_per_step": statistics.median(steps),
                "fastest": min(steps),
                "slowest": max(steps),
                "faults_per_step": (self.faults[-1] - self.faults[0]) / len(steps),
            }

    return StepClock()


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
    if FLAGS.repeats < 1:
        cli.fail(f"--repeats={FLAGS.repeats}: use 1 or more")
    names = [n for n in CASES if not FLAGS.only or any(n.startswith(o) for o in FLAGS.only)]
    if not names:
        cli.fail(f"--only={FLAGS.only} matches no case; cases: {', '.join(CASES)}")
    if PYTORCH in names and not torch_installed():
        print(f"{PYTORCH}: torch is not installed (pip install -e '.[bench]'); skipped")
        names.remove(PYTORCH)
    runs = {name: [] for name in names}
    gemm = []
    for _ in range(FLAGS.repeats):
        if any(name.startswith("reference") for name in names):
            gemm.append(gemm_gflops())
            print(f"  float32 matrix product (NumPy, 2048 x 2048): {gemm[-1]:.0f} GFLOP/s")
        for name in names:
            result = run_in_process(name)
            runs[name].append(result)
            print(
                f"  {name}: median {result['seconds_per_step']:.3f} s/step "
                f"({result['fastest']:.3f}-{result['slowest']:.3f}), "
                f"{result['faults_per_step']:.0f} page faults/step",
                flush=True,
            )

    print(
        f"\ntraining throughput, median of {FLAGS.steps} timed steps per case "
        f"({FLAGS.repeats} run(s): median of the runs [slowest-fastest run]), 2 CPU cores"
    )
    baseline = None
    medians = {}
    for name, results in runs.items():
        seconds = sorted(result["seconds_per_step"] for result in results)
        middle, slow, fast = statistics.median(seconds), seconds[-1], seconds[0]
        medians[name] = middle
        batch = results[0]["batch"]
        if name.startswith("demo"):
            baseline = baseline or batch / middle
            print(
                f"{name:<36}{batch / middle:8.1f} slices/s [{batch / slow:.1f}-{batch / fast:.1f}]"
                f"  ({batch / middle / baseline:.2f} x float32, 1 replica)"
            )
        else:
            print(f"{name:<36}{1 / middle:8.2f} it/s [{1 / slow:.2f}-{1 / fast:.2f}]")
    print("\ngenerators: parameters, GFLOPs per slice (convolutions, 2 per multiply-add)")
    for name, results in runs.items():
        if "parameters" in results[0]:
            cost = results[0]
            print(f"{name:<44}{cost['parameters'] / 1e6:8.3f} M {cost['gflops']:8.2f} GFLOPs")
    work = next((r[0]["step_gflops"] for n, r in runs.items() if "step_gflops" in r[0]), None)
    if work:
        print_step_rates(work, medians, statistics.median(gemm))
    for name in (n for n in runs if n.startswith("reference")):
        if PYTORCH in medians:
            ratio = medians[PYTORCH] / medians[name]
            print(f"{name} vs PyTorch, measured in this run: {ratio:.2f} x (target 1.5 x)")
        else:
            print(f"{name} vs PyTorch: not measured in this run (no torch), no ratio")


def print_step_rates(work, medians, gemm):
    """The reference step's convolution work, the rate each case reached on it (median
    step), and the same as a share of the cores' matrix-product rate ``gemm``."""
    total = sum(work.values())
    parts = ", ".join(f"{name} {flops:.1f}" for name, flops in work.items())
    print(f"\nreference step: {total:.1f} GFLOP of convolutions per step ({parts})")
    print("  counted as direct convolutions: tfmri's Winograd layer makes fewer multiplies")
    print(f"float32 matrix product on these cores, median of the runs: {gemm:.0f} GFLOP/s")
    for name, seconds in medians.items():
        if name.startswith("reference") or name == PYTORCH:  # PyTorch's step is the same work
            rate = total / seconds
            print(f"{name:<36}{rate:6.0f} GFLOP/s ({100 * rate / gemm:.0f} % of it)")
    if PYTORCH in medians:
        target = 1.5 * total / medians[PYTORCH]
        print(
            f"{'1.5 x PyTorch would need':<36}{target:6.0f} GFLOP/s ({100 * target / gemm:.0f} % of it)"
        )


def run_in_process(name):
    """Runs case ``name`` in a fresh process (2 for the worker case); returns its JSON."""
    command = [sys.executable, __file__, f"--case={name}", f"--steps={FLAGS.steps}"]
    if name == PYTORCH:
        command = [sys.executable, TORCH_SCRIPT, f"--steps={FLAGS.steps}"]
        command.append(f"--threads={os.cpu_count()}")  # the cores tfmri uses
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if CASES[name][3] == WORKERS:
        stdout = run_workers(command, env, 2)
    else:
        output = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        stdout = output.stdout
    return json.loads(stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    cli.run(main)
