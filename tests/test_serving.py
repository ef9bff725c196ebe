"""The serving client: payloads that match the signature, and clear transport errors."""

import http.server
import json
import os
import socket
import threading

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


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
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


@pytest.fixture
def fake_server():
    servers = []

    def start(status, body):
        handler = type("Handler", (_Answer,), {"status": status, "body": body})
        server = http.server.HTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()


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
