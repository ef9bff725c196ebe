"""Flags that several applications take with one meaning."""

from absl import flags

from tfmri.data import fastmri_files

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
flags.DEFINE_string(
    "input_dir", None, "fastMRI data: a directory of .h5 files (or of split sub-directories)."
)
flags.DEFINE_enum(
    "on_error",
    "fail",
    list(fastmri_files.ON_ERROR),
    "On a bad input file: fail stops at the first; skip leaves it out and lists it.",
)
