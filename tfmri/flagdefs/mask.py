"""The undersampling-mask flags: ``--mask_type``, ``--center_fractions``, ``--accelerations``.

Training and evaluation mask with them; ``tfmri.reconstruct`` and the serving client
use them for fully sampled files (test files carry their own mask).
"""

from absl import flags

from tfmri.data import masks
from tfmri.errors import UserError

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


def spec(values) -> masks.MaskSpec:
    """The MaskSpec of the three flags of ``values`` (absl FlagValues); UserError naming
    them when they do not parse."""
    given = (
        f"--mask_type={values.mask_type} --center_fractions={','.join(values.center_fractions)} "
        f"--accelerations={','.join(values.accelerations)}"
    )
    try:
        return masks.parse_spec(values.mask_type, values.center_fractions, values.accelerations)
    except ValueError as error:
        raise UserError(
            f"{given}: {error}; e.g. --center_fractions=0.04 --accelerations=8"
        ) from None
