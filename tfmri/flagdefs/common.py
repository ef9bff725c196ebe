"""Flags that several applications take with one meaning."""

from absl import flags

flags.DEFINE_integer("batch_size", 8, "Slices per batch (training: the global batch).")
flags.DEFINE_string(
    "output_dir", None, "Where the command's results go (see its --help for the default)."
)
flags.DEFINE_string(
    "checkpoint",
    None,
    "Checkpoint to use (a ckpt-N prefix or a directory; default: the newest in --model_dir).",
)
flags.DEFINE_string("export_dir", "savedmodel", "Base directory of the served models.")
flags.DEFINE_string("model_name", None, "Name of the served model: <export_dir>/<model_name>/.")
flags.DEFINE_integer(
    "version",
    None,
    "Version of the served model (export: default the next free one; client: the newest).",
)
