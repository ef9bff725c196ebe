"""The undersampling-mask flags, defined once for every application that takes them.

``--mask_type``, ``--center_fractions`` and ``--accelerations``: training and
evaluation mask with them (``tfmri.config`` imports this module); ``tfmri.reconstruct``
and the serving client use them for fully sampled files (test files carry their own
mask). :func:`spec` parses them.
"""

from absl import flags

from tfmri.data import masks
from tfmri.errors import UserError

FLAGS = flags.FLAGS

flags.DEFINE_enum(
    "mask_type",
    "random",
    list(masks.MASK_TYPES),
    "Undersampling mask type (for fully sampled files; test files carry their own mask).",
)
flags.DEFINE_list(
    "center_fractions", ["0.04"], "Fractions of centre columns kept, one per acceleration."
)
flags.DEFINE_list(
    "accelerations", ["8"], "Acceleration factors; one (fraction, acceleration) pair per step."
)


def spec() -> masks.MaskSpec:
    """The MaskSpec of the three flags; UserError naming them when they do not parse."""
    given = (
        f"--mask_type={FLAGS.mask_type} --center_fractions={','.join(FLAGS.center_fractions)} "
        f"--accelerations={','.join(FLAGS.accelerations)}"
    )
    try:
        return masks.parse_spec(FLAGS.mask_type, FLAGS.center_fractions, FLAGS.accelerations)
    except ValueError as error:
        raise UserError(
            f"{given}: {error}; e.g. --center_fractions=0.04 --accelerations=8"
        ) from None
