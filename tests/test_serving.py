"""The serving client: payloads that match the signature, and clear transport errors."""

import http.server
import json
import os
import socket
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import run_tool
from tfmri.data import masks
from tfmri.serving import client


def _val_file(raw):
    return sorted(
        os.path.join(raw, "singlecoil_val", n)
        for n in os.listdir(os.path.join(raw, "singlecoil_val"))
    )[0]


@pytest.fixture(scope="module")
def signature(exported):
    _, export_dir, _ = exported
    return tf.saved_model.load(os.path.join(export_dir, "knee", "1")).signatures["serving_default"]


def _client_inputs(path, slices="0:2"):
    """What python -m tfmri.client sends for a file (8x random, the volume's mask)."""
    spec = masks.MaskSpec("random", (0.04,), (8,))
    kspace, mask = client.load_request(path, spec, slices)
    return client.split_kspace(kspace, mask)


def test_rest_and_grpc_payloads_feed_the_signature(signature, singlecoil_raw):
    inputs = _client_inputs(_val_file(singlecoil_raw))
    direct = signature(**{k: tf.constant(v) for k, v in inputs.items()})["reconstruction"].numpy()
    from_rest = client.decode_rest_payload(client.rest_payload(inputs))
    request = client.grpc_request(inputs, "knee", version=1)
    assert (
        request.model_spec.name == "knee" and request.model_spec.signature_name == "serving_default"
    )
    assert request.model_spec.version.value == 1
    from_grpc = client.decode_grpc_request(request)
    for decoded in (from_rest, from_grpc):
        assert set(decoded) == {"kspace_real", "kspace_imag", "mask"}
        assert all(v.dtype == np.float32 for v in decoded.values())
        out = signature(**{k: tf.constant(v) for k, v in decoded.items()})["reconstruction"]
        np.testing.assert_allclose(out.numpy(), direct, rtol=0, atol=1e-6 * np.abs(direct).max())
    assert direct.shape == (2, 320, 320)
    # The undersampled columns are sent as zeros.
    unsampled = inputs["mask"][0] == 0
    assert np.all(inputs["kspace_real"][:, :, unsampled] == 0)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("protocol", ["rest", pytest.param("grpc", marks=pytest.mark.slow)])
def test_unreachable_server_is_one_clear_error(singlecoil_raw, tmp_path, protocol):
    output = tmp_path / "out.npy"
    result = run_tool(
        "-m",
        "tfmri.client",
        f"--input={_val_file(singlecoil_raw)}",
        "--model_name=knee",
        f"--protocol={protocol}",
        "--host=127.0.0.1",
        f"--port={_free_port()}",
        "--timeout=5",
        f"--output={output}",
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "cannot reach TF Serving" in last
    assert not output.exists()


class _Answer(http.server.BaseHTTPRequestHandler):
    status, body = 200, b"{}"

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def _serve_until(server, stop, lifetime=30.0):
    """Answers requests until ``stop`` is set, or ``lifetime`` seconds at most."""
    deadline = time.monotonic() + lifetime
    server.timeout = 0.1
    while not stop.is_set() and time.monotonic() < deadline:
        server.handle_request()
    server.server_close()


@pytest.fixture
def fake_server():
    """start(status, body) -> the port of a server on 127.0.0.1 answering every POST so;
    each stops with the test, or by itself after 30 s."""
    stop, threads = threading.Event(), []

    def start(status, body):
        handler = type("Handler", (_Answer,), {"status": status, "body": body})
        server = http.server.HTTPServer(("127.0.0.1", 0), handler)
        threads.append(threading.Thread(target=_serve_until, args=(server, stop), daemon=True))
        threads[-1].start()
        return server.server_address[1]

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=5)


def test_server_error_answer_is_reported(fake_server):
    port = fake_server(
        400, json.dumps({"error": "Expects arg[0] to be float but double is provided"}).encode()
    )
    inputs = client.split_kspace(np.ones((1, 8, 8), np.complex64), np.ones(8))
    with pytest.raises(client.ServingError, match="answered 400: Expects arg"):
        client.predict_rest("127.0.0.1", port, "knee", client.rest_payload(inputs), timeout=5)


def test_rest_answer_is_decoded(fake_server):
    port = fake_server(200, json.dumps({"outputs": [[[1.0, 2.0], [3.0, 4.0]]]}).encode())
    inputs = client.split_kspace(np.ones((1, 8, 8), np.complex64), np.ones(8))
    image = client.predict_rest("127.0.0.1", port, "knee", client.rest_payload(inputs), version=2)
    np.testing.assert_array_equal(image, [[[1, 2], [3, 4]]])


def test_bad_arrays_are_refused():
    with pytest.raises(ValueError, match="complex"):
        client.split_kspace(np.ones((2, 8, 8), np.float32), np.ones(8))
    with pytest.raises(ValueError, match="mask"):
        client.split_kspace(np.ones((2, 8, 8), np.complex64), np.ones(7))


def _two_slices():
    return client.split_kspace(np.ones((2, 8, 8), np.complex64), np.ones(8))


def _square(value, batch=2, size=3):
    return [[[value] * size] * size] * batch


BAD_REST_ANSWERS = {
    "not JSON": (b"<html>502 Bad Gateway</html>", "the answer is not JSON"),
    "a string": (b'"reconstruction"', "not a JSON object with 'outputs'"),
    "a list": (json.dumps(_square(1.0)).encode(), "not a JSON object with 'outputs'"),
    "string outputs": (b'{"outputs": "abc"}', r"holds <U3 values .*expected float32"),
    "ragged": (b'{"outputs": [[[1.0, 2.0], [3.0]]]}', "the answer is not an array"),
    "wrong shape": (b'{"outputs": [[1.0, 2.0]]}', r"shape \[1, 2\], expected \[2, S, S\]"),
    "wrong batch": (json.dumps({"outputs": _square(1.0, batch=1)}).encode(), r"shape \[1, 3, 3\]"),
    "not square": (b'{"outputs": [[[1.0, 2.0]], [[3.0, 4.0]]]}', r"shape \[2, 1, 2\]"),
    "NaN": (json.dumps({"outputs": _square(float("nan"))}).encode(), "18 NaN or infinite"),
    "float32 overflow": (json.dumps({"outputs": _square(1e39)}).encode(), "NaN or infinite"),
}


@pytest.mark.parametrize("case", sorted(BAD_REST_ANSWERS))
def test_a_bad_rest_answer_is_one_serving_error_naming_the_server(fake_server, case):
    body, message = BAD_REST_ANSWERS[case]
    port = fake_server(200, body)
    with pytest.raises(client.ServingError, match=message) as raised:
        client.predict_rest("127.0.0.1", port, "knee", client.rest_payload(_two_slices()))
    text = str(raised.value)
    assert text.startswith(f"http://127.0.0.1:{port}/v1/models/knee:predict: ")
    assert "\n" not in text


def test_the_model_crop_is_checked_when_known(fake_server):
    port = fake_server(200, json.dumps({"outputs": _square(1.0)}).encode())
    body = client.rest_payload(_two_slices())
    image = client.predict_rest("127.0.0.1", port, "knee", body, batch=2)
    assert image.dtype == np.float32 and image.shape == (2, 3, 3) and np.all(image == 1)
    with pytest.raises(client.ServingError, match=r"expected \[2, 320, 320\]"):
        client.predict_rest("127.0.0.1", port, "knee", body, size=320)


@pytest.mark.parametrize("answer", ["nan", "wrong shape"])
def test_the_client_saves_nothing_from_a_bad_answer(fake_server, singlecoil_raw, tmp_path, answer):
    # The two slices sent are 320 x 320 reconstructions to the model; the server lies.
    outputs = _square(float("nan"), batch=2, size=320) if answer == "nan" else [[1.0, 2.0]]
    port = fake_server(200, json.dumps({"outputs": outputs}).encode())
    output = tmp_path / "out.npy"
    result = run_tool(
        "-m",
        "tfmri.client",
        f"--input={_val_file(singlecoil_raw)}",
        "--model_name=knee",
        "--host=127.0.0.1",
        f"--port={port}",
        "--slices=0:2",
        "--timeout=20",
        f"--output={output}",
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert f"127.0.0.1:{port}" in lines[0]
    assert ("NaN or infinite" if answer == "nan" else "shape [1, 2]") in lines[0]
    assert os.listdir(tmp_path) == []


@pytest.fixture
def fake_grpc_server():
    """start(PredictResponse) -> the port of a gRPC server on 127.0.0.1 answering every
    Predict with it; stopped with the test."""
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    servers = []

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def __init__(self, response):
            self.response = response

        def Predict(self, request, context):  # noqa: N802 - the service's naming
            return self.response

    def start(response):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            Servicer(response), server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return port

    yield start
    for server in servers:
        server.stop(grace=None)


def _grpc_answer(value=None, name="reconstruction"):
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    if value is not None:
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return response


def test_grpc_answers_are_checked(fake_grpc_server):
    request = client.grpc_request(_two_slices(), "knee")
    good = np.arange(18, dtype=np.float32).reshape(2, 3, 3)
    port = fake_grpc_server(_grpc_answer(good))
    np.testing.assert_array_equal(client.predict_grpc("127.0.0.1", port, request, 10), good)
    nan = good.copy()
    nan[1, 2, 2] = np.nan
    cases = {
        "no output": (
            _grpc_answer(good, name="output_0"),
            r"no 'reconstruction' output .*output_0",
        ),
        "wrong shape": (_grpc_answer(good[:1, :1]), r"shape \[1, 1, 3\], expected \[2, S, S\]"),
        "NaN": (_grpc_answer(nan), "1 NaN or infinite values in its 18"),
        "strings": (_grpc_answer(np.array([[[b"a"]]] * 2)), "holds object values"),
    }
    for response, message in cases.values():
        port = fake_grpc_server(response)
        with pytest.raises(client.ServingError, match=message) as raised:
            client.predict_grpc("127.0.0.1", port, request, 10)
        assert str(raised.value).startswith(f"127.0.0.1:{port}: ")
