"""The data flags of a run (``DataConfig``): which converted splits, which crop.

``--batch_size`` is in ``common`` (other applications take it too).
"""

from absl import flags

from tfmri.flagdefs import common  # noqa: F401 - --batch_size

flags.DEFINE_string("data_dir", None, "Converted TFRecords (the converter's --output_dir).")
flags.DEFINE_string("train_split", "singlecoil_train", "Split to train on.")
flags.DEFINE_string("val_split", "singlecoil_val", "Split to validate and evaluate on.")
flags.DEFINE_integer("crop_size", 320, "Side of the square recon crop the model sees.")
flags.DEFINE_integer("shuffle_buffer", 64, "Records in the training shuffle buffer.")
