"""Requests to TensorFlow Serving for an exported tfmri model, over REST and gRPC.

The payload is what ``serving_default`` of ``tfmri.export`` takes: ``kspace_real``,
``kspace_imag`` float32 [B, H, W] and ``mask`` float32 [B, W]. Builders and decoders
are separate from the transport so that tests can check a payload against the
signature without a server (TF Serving cannot be installed on these machines).

The server is not trusted: an answer is returned only if it is a finite float array
[B, S, S] for the request's B slices (:func:`check_reconstruction`); anything else is a
:class:`ServingError` naming the server and what was wrong.
"""

import http.client
import json
import urllib.error
import urllib.request

import numpy as np

from tfmri.data import fastmri_files, masks
from tfmri.errors import UserError

SIGNATURE = "serving_default"


class ServingError(UserError):
    """The server is unreachable, answered with an error, or answered something that is
    not a reconstruction of the request."""


class RequestError(UserError, ValueError):
    """Request arrays of the wrong kind or shape."""


def split_kspace(kspace, mask):
    """complex k-space [B, H, W] (or one slice [H, W]), or multi-coil [B, C, H, W], and a
    [W] or [B, W] mask -> the three inputs of ``serving_default``."""
    kspace = np.asarray(kspace)
    if kspace.ndim == 2:
        kspace = kspace[None]
    if kspace.ndim not in (3, 4) or not np.iscomplexobj(kspace):
        raise RequestError(
            "k-space must be complex [B, H, W], [H, W] or multi-coil [B, C, H, W], got "
            f"{kspace.dtype} {kspace.shape}"
        )
    mask = np.asarray(mask, np.float32)
    if mask.ndim == 1:
        mask = np.tile(mask, (kspace.shape[0], 1))
    if mask.shape != (kspace.shape[0], kspace.shape[-1]):
        expected = (kspace.shape[0], kspace.shape[-1])
        raise RequestError(f"mask must be [W] or [B, W] = {expected}, got {mask.shape}")
    return {
        "kspace_real": np.ascontiguousarray(kspace.real, np.float32),
        "kspace_imag": np.ascontiguousarray(kspace.imag, np.float32),
        "mask": mask,
    }


def load_request(path, spec, slices=None):
    """(undersampled complex k-space [B, (C,) H, W], mask [W] or [B, W]) of a file.

    ``path``: a fastMRI .h5 file (a test file's own mask; otherwise the volume's fixed
    fastMRI mask of ``spec``) or a .npz with ``kspace`` and ``mask``. ``slices``:
    ``"START:STOP"`` of the volume, or None for all.
    """
    if path.endswith(".npz"):
        try:
            data = np.load(path)
            return data["kspace"], data["mask"]
        except (OSError, KeyError, ValueError) as error:
            raise UserError(f"{path}: needs arrays 'kspace' and 'mask' ({error})") from None
    volume = fastmri_files.read_volume(path)
    kspace = volume.kspace
    if slices:
        try:
            start, stop = (int(part) if part else None for part in slices.split(":"))
        except ValueError:
            raise UserError(f"--slices={slices}: use START:STOP, e.g. 10:14") from None
        count = volume.num_slices
        first = 0 if start is None else start
        end = count if stop is None else stop
        if not 0 <= first < end <= count:
            raise UserError(
                f"--slices={slices}: {path} has {count} slices; give START:STOP with "
                f"0 <= START < STOP <= {count}"
            )
        kspace = kspace[start:stop]
    mask = volume.mask
    if mask is None:
        mask = masks.fixed_volume_mask(spec, volume.name, kspace.shape[-1])
    return kspace * mask, mask


def rest_payload(inputs) -> str:
    """The JSON body of ``POST /v1/models/NAME[/versions/N]:predict`` (columnar format)."""
    return json.dumps(
        {"signature_name": SIGNATURE, "inputs": {k: v.tolist() for k, v in inputs.items()}}
    )


def decode_rest_payload(body) -> dict:
    """The inputs of a REST body, as float32 arrays (what the server feeds the signature)."""
    return {k: np.asarray(v, np.float32) for k, v in json.loads(body)["inputs"].items()}


def grpc_request(inputs, model_name, version=None):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest`` for the inputs."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = SIGNATURE
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=tf.float32))
    return request


def decode_grpc_request(request) -> dict:
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}


def _url(host, port, model_name, version):
    path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version else "")
    return f"http://{host}:{port}{path}:predict"


def check_reconstruction(outputs, server, batch, size=None) -> np.ndarray:
    """The server's answer as float32 [batch, S, S], checked: a ServingError naming
    ``server`` (URL or host:port) says what is wrong with any other answer.

    ``outputs``: the decoded answer (nested lists of a JSON answer, or an array);
    ``batch``: the request's slice count; ``size``: the model's crop S, if known (the
    answer must then be [batch, S, S]; otherwise square). JSON numbers may be integers;
    an array must have a float dtype. Every value must be finite.
    """
    try:
        image = np.asarray(outputs)
    except ValueError as error:  # ragged nested lists
        raise ServingError(f"{server}: the answer is not an array ({error})") from None
    from_json = not isinstance(outputs, np.ndarray)
    numeric = image.dtype.kind == "f" or (from_json and image.dtype.kind in "iu")
    if not numeric:
        raise ServingError(
            f"{server}: the answer holds {image.dtype} values {str(outputs)[:80]}, expected "
            "float32 (a reconstruction)"
        )
    expected = f"[{batch}, {size or 'S'}, {size or 'S'}] for {batch} slices"
    square = image.ndim == 3 and image.shape[1] == image.shape[2] > 0
    if not square or image.shape[0] != batch or (size and image.shape[1] != size):
        raise ServingError(
            f"{server}: the answer has shape {list(image.shape)}, expected {expected}; is "
            "the model an export of python -m tfmri.export?"
        )
    with np.errstate(over="ignore"):  # beyond float32's range: counted as not finite below
        image = image.astype(np.float32)
    bad = np.count_nonzero(~np.isfinite(image))
    if bad:
        raise ServingError(
            f"{server}: the answer holds {bad} NaN or infinite values in its "
            f"{image.size}; no reconstruction saved"
        )
    return image


def predict_rest(
    host, port, model_name, body, version=None, timeout=30.0, batch=None, size=None
) -> np.ndarray:
    """Posts a REST body; returns the reconstruction float32 [B, S, S], checked by
    :func:`check_reconstruction` (``batch``: the body's slice count, read from it if
    None; ``size``: the model's crop S, if known)."""
    url = _url(host, port, model_name, version)
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except ValueError:
            pass
        raise ServingError(f"{url}: the server answered {error.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise ServingError(
            f"{url}: cannot reach TF Serving ({reason}); is it running on {host}:{port}, "
            "with --rest_api_port?"
        ) from None
    except http.client.HTTPException as error:  # e.g. the answer cut short
        raise ServingError(f"{url}: the answer broke off ({error!r})") from None
    try:
        answer = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ServingError(
            f"{url}: the answer is not JSON ({error}): {text[:80]!r}; is this TF Serving's "
            "REST port?"
        ) from None
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    if isinstance(outputs, dict):
        outputs = outputs.get("reconstruction")
    if outputs is None:
        raise ServingError(
            f"{url}: the answer is not a JSON object with 'outputs' (the reconstruction): "
            f"{str(answer)[:200]}"
        )
    if batch is None:
        batch = len(json.loads(body)["inputs"]["mask"])
    return check_reconstruction(outputs, url, batch, size)


def predict_grpc(host, port, request, timeout=30.0, size=None) -> np.ndarray:
    """Sends a PredictRequest; returns the reconstruction float32 [B, S, S], checked by
    :func:`check_reconstruction` (B: the request's ``mask`` batch; ``size``: the
    model's crop S, if known)."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    address = f"{host}:{port}"
    try:
        with grpc.insecure_channel(address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            response = stub.Predict(request, timeout=timeout)
    except grpc.RpcError as error:
        code, detail = error.code(), error.details()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise ServingError(
                f"{address}: cannot reach TF Serving over gRPC ({code.name}: {detail}); is it "
                "running, with --port?"
            ) from None
        raise ServingError(f"{address}: the server answered {code.name}: {detail}") from None
    return decode_grpc_response(response, address, request.inputs["mask"].tensor_shape, size)


def decode_grpc_response(response, server, mask_shape, size=None) -> np.ndarray:
    """A PredictResponse's ``reconstruction``, checked by :func:`check_reconstruction`
    against the request's ``mask`` TensorShapeProto [B, W]."""
    import tensorflow as tf

    if "reconstruction" not in response.outputs:
        raise ServingError(
            f"{server}: the answer has no 'reconstruction' output (it has "
            f"{sorted(response.outputs) or 'none'})"
        )
    try:
        image = tf.make_ndarray(response.outputs["reconstruction"])
    except (TypeError, ValueError) as error:
        raise ServingError(f"{server}: the answer's tensor cannot be read ({error})") from None
    return check_reconstruction(image, server, mask_shape.dim[0].size, size)
