"""The flags of where and how a run runs (``RuntimeConfig``): directory, devices,
precision, checkpoints and logs."""

from absl import flags

from tfmri import run_config

flags.DEFINE_string("model_dir", None, "Where checkpoints, TensorBoard logs and flags go.")
flags.DEFINE_enum(
    "strategy",
    "default",
    list(run_config.STRATEGIES),
    "tf.distribute strategy: one device; MirroredStrategy over all devices; or "
    "MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (one process per worker, "
    "e.g. tools/launch_local_cluster.py).",
)
flags.DEFINE_integer(
    "num_cpu_devices", 0, "Split the CPU into this many logical devices (0: do not split)."
)
flags.DEFINE_enum(
    "precision",
    "float32",
    list(run_config.PRECISIONS),
    "Compute precision; variables, outputs, losses and metrics stay float32.",
)
flags.DEFINE_boolean("deterministic", False, "Enable TensorFlow op determinism (slower).")
flags.DEFINE_integer(
    "checkpoint_every_steps", 0, "Also checkpoint every N steps (0: at the end of each epoch only)."
)
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept in --model_dir.")
flags.DEFINE_integer("log_every_steps", 10, "TensorBoard scalars every N steps (0: never).")
flags.DEFINE_integer("num_images", 4, "Validation slices shown in TensorBoard each epoch.")
