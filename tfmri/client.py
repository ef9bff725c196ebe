"""Sends undersampled k-space to TensorFlow Serving and saves the reconstruction.

  python -m tfmri.client --input=file1000001.h5 --model_name=knee \
      [--protocol=rest|grpc] [--host=localhost] [--port=8501] [--slices=10:14] \
      [--output=reconstruction.npy]

``--input`` is a fastMRI HDF5 file (a test file's own mask is used; other files are
undersampled with the volume's fixed fastMRI mask of --mask_type, --center_fractions,
--accelerations) or a .npz with ``kspace`` (complex [B, H, W] or [H, W]) and ``mask``
([W] or [B, W]). The model must be an export of ``python -m tfmri.export``.
"""

import os

import numpy as np
from absl import flags

from tfmri import cli

cli.quiet_tensorflow(load=False)

from tfmri import fileio  # noqa: E402
from tfmri.errors import UserError  # noqa: E402
from tfmri.flagdefs import common  # noqa: E402, F401 - common: --model_name, --version
from tfmri.flagdefs import mask as mask_flags  # noqa: E402
from tfmri.serving import client  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "A fastMRI .h5 file, or a .npz with kspace and mask.")
flags.DEFINE_enum("protocol", "rest", ["rest", "grpc"], "REST (JSON) or gRPC (PredictRequest).")
flags.DEFINE_string("host", "localhost", "TF Serving's host.")
flags.DEFINE_integer("port", None, "TF Serving's port (default: 8501 for REST, 8500 for gRPC).")
flags.DEFINE_float("timeout", 60.0, "Seconds to wait for the answer.", lower_bound=0.1)
flags.DEFINE_string("slices", None, "Slices of an .h5 volume to send, e.g. 10:14 (default: all).")
flags.DEFINE_string("output", "reconstruction.npy", "Where to save the [B, S, S] reconstruction.")


@cli.user_errors_to_exit
def main(argv):
    if not FLAGS.input or not os.path.exists(FLAGS.input):
        raise UserError(f"--input={FLAGS.input}: no such file")
    if not FLAGS.model_name:
        raise UserError("--model_name is required: the name TF Serving serves the model under")
    if FLAGS.port is not None and not 1 <= FLAGS.port <= 65535:
        raise UserError(f"--port={FLAGS.port}: TCP ports are 1 to 65535 (TF Serving: 8501 REST)")
    spec = mask_flags.spec(FLAGS)
    kspace, mask = client.load_request(FLAGS.input, spec, FLAGS.slices)
    inputs = client.split_kspace(kspace, mask)
    # Both calls check the answer (shape, dtype, finite) before it is saved.
    if FLAGS.protocol == "rest":
        port = FLAGS.port or 8501
        body = client.rest_payload(inputs)
        batch = inputs["mask"].shape[0]
        image = client.predict_rest(
            FLAGS.host, port, FLAGS.model_name, body, FLAGS.version, FLAGS.timeout, batch
        )
    else:
        port = FLAGS.port or 8500
        request = client.grpc_request(inputs, FLAGS.model_name, FLAGS.version)
        image = client.predict_grpc(FLAGS.host, port, request, FLAGS.timeout)
    with fileio.atomic_path(FLAGS.output) as temporary, open(temporary, "wb") as handle:
        np.save(handle, image)
    print(f"{image.shape[0]} slices reconstructed {tuple(image.shape[1:])} -> {FLAGS.output}")


if __name__ == "__main__":
    cli.run(main)
