"""The flags of the data tfmri writes itself: the synthetic volumes and the check set."""

from absl import flags

from tfmri.data import synthetic
from tfmri.errors import UserError

flags.DEFINE_integer("num_volumes", 10, "Synthetic volumes in all, dealt to the splits.")
flags.DEFINE_integer(
    "num_slices",
    None,
    "Slices per volume (default: 12 for synthetic volumes, 6 for the check set; real knee "
    "volumes have ~35).",
)
flags.DEFINE_integer("coils", 1, "1 for single-coil files, K > 1 for multi-coil (smooth maps).")
flags.DEFINE_integer("data_seed", 0, "Seed of the data; the same seed writes the same files.")
flags.DEFINE_enum(
    "data_source",
    "natural",
    list(synthetic.SOURCES),
    "Synthetic data: 'natural' (photographs made MR-like, tfmri/data/natural.py), which "
    "teaches reconstruction that carries over to real anatomy, or 'knee' (the knee phantom).",
)


def check_counts(values, names):
    """UserError naming the first of the flags ``names`` of ``values`` (absl FlagValues)
    that is given and below 1."""
    for name in names:
        value = values[name].value
        if value is not None and value < 1:
            raise UserError(f"--{name}={value}: must be >= 1")
