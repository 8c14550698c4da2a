"""`vision-tasks serve`: every endpoint, every bad input, auth, CORS, the full queue, dynamic
batching, timeouts, draining and SIGTERM; the answers (boxes and RLE masks) equal `vision-tasks
predict`'s lines for the same images. The model is the stand-in segment model of
`test_segment_runtime.py` (built with onnx.helper in a blink: this file is about serving, and the
same file goes through both paths).

Servers run in this process (uvicorn in a thread, a free port of 127.0.0.1) except the SIGTERM
test, which starts `vision-tasks serve` as a subprocess under a timeout and kills it by pid.
No assertion is about time: waits are bounded only so that a hang fails instead of blocking.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import orjson
import pytest
from PIL import Image
from test_segment_runtime import segment_model
from testkit import assert_runs_without_torch, noise
from vision_tasks.export.serve.options import ServeOptions

from vision_tasks.cli import main

pytest.importorskip("uvicorn")  # the serve extra (scripts/setup.sh installs it)

START_TIMEOUT_S = 60
RAY_TIMEOUT_S = 120  # Ray and Serve start in ~20 s on 2 busy cores; a hang fails instead


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return orjson.loads(self.body)


def call(address: tuple[str, int], method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 60) -> Answer:
    """One request on a fresh connection."""
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()},
                      response.read())
    finally:
        conn.close()


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str] | None = None
              ) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body of ``files`` (name, bytes) and plain ``fields``."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     .encode() + value.encode() + b"\r\n")
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="images"; '
                     f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                     .encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@contextmanager
def serving(options) -> Iterator[tuple[tuple[str, int], object]]:
    """The app of ``options`` on uvicorn in a thread, on a free port of 127.0.0.1; yields the
    address and the app's :class:`ServerState`, and stops the server on exit."""
    import uvicorn
    from vision_tasks.export.serve.app import build_app

    app = build_app(options)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield sock.getsockname()[:2], app.state.server
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)
        sock.close()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` pixels in a few dozen bytes (a decompression
    bomb's shape: its header alone says how much memory decoding would take)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def options(model: Path, **changes) -> ServeOptions:
    """One thread, one lane: the tiny model needs no more, and the machine is shared."""
    return ServeOptions(models={"m": str(model)}, threads=1, lanes=1, workers=2, **changes)


# Three objects (scores 0.9, 0.8, 0.7) and an empty row, in input pixels (256 x 192).
BOXES = np.array([[10, 10, 90, 80], [100, 40, 200, 150], [30, 100, 120, 180], [0, 0, 0, 0]],
                 np.float32)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return segment_model(tmp_path_factory.mktemp("serve") / "m.onnx", BOXES)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Four images of other sizes than the model input: PNG, JPEG, WebP and a gray PNG."""
    root = tmp_path_factory.mktemp("serve-images")
    cv2.imwrite(str(root / "a.png"), noise(40, 60, seed=1))
    cv2.imwrite(str(root / "b.jpg"), noise(50, 30, seed=2))
    Image.fromarray(noise(33, 47, seed=3)).save(root / "c.webp", lossless=True)
    Image.fromarray(noise(20, 20, seed=4)[..., 0]).save(root / "d.png")
    return root


@pytest.fixture(scope="module")
def server(model_path):
    with serving(options(model_path, max_body_mb=0.25, max_images=4, max_pixels=1_000_000)) as s:
        yield s


def test_endpoints_describe_the_server(server):
    address, _ = server
    assert call(address, "GET", "/healthz").json() == {"status": "alive"}
    assert call(address, "GET", "/readyz").json() == {"status": "ready", "models": ["m"]}
    listed = call(address, "GET", "/v1/models").json()["models"]
    assert [m["name"] for m in listed] == ["m"]
    info = call(address, "GET", "/v1/models/m").json()
    assert info["task"] == "segment" and info["input_size"] == [192, 256]
    assert len(info["classes"]) == 3 and info["heads"] == {}
    spec = call(address, "GET", "/openapi.json").json()
    assert "/v1/models/{name}/predict" in spec["paths"]
    page = call(address, "GET", "/docs")
    assert page.status == 200 and b"/v1/models/{name}/predict" in page.body
    metrics = call(address, "GET", "/metrics")
    assert metrics.status == 200 and metrics.headers["content-type"].startswith("text/plain")
    for name in ("vision_tasks_requests_total", "vision_tasks_errors_total",
                 "vision_tasks_queue_depth", "vision_tasks_batch_size",
                 "vision_tasks_request_seconds"):
        assert name.encode() in metrics.body


def test_answers_equal_predict_lines(server, model_path, images, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", str(model_path), str(images), "--out", str(out), "--quiet",
                 "--device", "cpu", "--lanes", "1", "--threads", "1"]) == 0
    lines = {Path(r["source"]).name: r for r in map(json.loads, (out / "predictions.jsonl")
                                                    .read_text().splitlines())}
    assert sorted(lines) == ["a.png", "b.jpg", "c.webp", "d.png"]
    address, _ = server

    def same(answer: dict, line: dict) -> None:
        """Equal but for the source and float rounding (another batch size may change a
        score's last digit)."""
        def close(a, b) -> bool:
            if isinstance(a, dict):
                return isinstance(b, dict) and a.keys() == b.keys() and all(
                    close(a[k], b[k]) for k in a)
            if isinstance(a, list):
                return isinstance(b, list) and len(a) == len(b) and all(map(close, a, b))
            if isinstance(a, float):
                return abs(a - b) <= 2e-6
            return a == b

        assert close({**answer, "source": ""}, {**line, "source": ""}), (answer, line)

    for name, line in lines.items():
        answer = call(address, "POST", "/v1/models/m/predict", (images / name).read_bytes())
        assert answer.status == 200, answer.body
        assert answer.body.count(b"\n") == 1 and answer.json()["source"] == "<bytes>"
        same(answer.json(), line)
    body, headers = multipart([(n, (images / n).read_bytes()) for n in sorted(lines)])
    answer = call(address, "POST", "/v1/models/m/predict", body, headers)
    assert answer.status == 200, answer.body
    predictions = answer.json()["predictions"]
    assert [p["source"] for p in predictions] == sorted(lines)
    for prediction in predictions:
        same(prediction, lines[prediction["source"]])
    found = lines["a.png"]["detections"]
    assert len(found) == 3 and all(d["mask"]["counts"] for d in found)
    # options: the query string, a form field and a JSON options part
    one = (images / "a.png").read_bytes()
    path = "/v1/models/m/predict"
    assert len(call(address, "POST", path + "?score_threshold=0.85", one).json()["detections"]) == 1
    body, headers = multipart([("a.png", one)], {"score_threshold": "0.75"})
    assert len(call(address, "POST", path, body, headers).json()["predictions"][0]["detections"]) == 2
    body, headers = multipart([("a.png", one)], {"options": '{"score_threshold": 0.95}'})
    assert call(address, "POST", path, body, headers).json()["predictions"][0]["detections"] == []


def test_every_bad_input_is_a_one_line_4xx_and_the_server_keeps_serving(server, images):
    address, state = server
    good = (images / "a.png").read_bytes()
    jpeg = (images / "b.jpg").read_bytes()
    too_many, too_many_headers = multipart([(f"{i}.png", good) for i in range(5)])
    broken_form = b"garbage, not a multipart body"
    form = {"Content-Type": "multipart/form-data; boundary=xyz"}
    cases = [  # (what, path, body, headers, status)
        ("not an image", "/v1/models/m/predict", b"hello, not an image", {}, 415),
        ("truncated image", "/v1/models/m/predict", jpeg[: len(jpeg) // 2], {}, 400),
        ("decompression bomb", "/v1/models/m/predict", png_header_only(100_000, 100_000), {}, 413),
        ("over --max-pixels", "/v1/models/m/predict", png_header_only(2000, 1000), {}, 413),
        ("body over --max-body-mb", "/v1/models/m/predict", b"\xff" * 300_000, {}, 413),
        ("empty body", "/v1/models/m/predict", b"", {}, 400),
        ("unknown model", "/v1/models/nope/predict", good, {}, 404),
        ("top_k not a number", "/v1/models/m/predict?top_k=abc", good, {}, 400),
        ("top_k out of range", "/v1/models/m/predict?top_k=0", good, {}, 400),
        ("threshold out of range", "/v1/models/m/predict?score_threshold=1.5", good, {}, 400),
        ("threshold not a number", "/v1/models/m/predict?score_threshold=high", good, {}, 400),
        ("heads of a single-task model", "/v1/models/m/predict?heads=a", good, {}, 400),
        ("unknown option", "/v1/models/m/predict?colour=red", good, {}, 400),
        ("more than --max-images", "/v1/models/m/predict", too_many, too_many_headers, 413),
        ("malformed multipart", "/v1/models/m/predict", broken_form, form, 400),
        ("options part not JSON", "/v1/models/m/predict", *multipart([("a.png", good)],
                                                                     {"options": "{top_k"}), 400),
        ("no such route", "/v2/anything", None, {}, 404),
        ("wrong method", "/v1/models/m/predict?x=1", None, {}, 405),
    ]
    for what, path, body, headers, status in cases:
        method = "GET" if what == "wrong method" else "POST"
        answer = call(address, method, path, body, headers)
        assert answer.status == status, (what, answer.status, answer.body)
        assert answer.body.endswith(b"\n") and answer.body.count(b"\n") == 1, what
        message = answer.json()["error"]
        assert message and "Traceback" not in message, what
    assert call(address, "POST", "/v1/models/m/predict", good).status == 200
    counted = state.metrics.text().decode()
    for kind in ("not_image", "bad_image", "too_many_pixels", "body_too_large", "unknown_model",
                 "bad_option", "too_many_images", "bad_multipart", "empty"):
        assert f'kind="{kind}"' in counted, kind


def test_bearer_token_is_required_except_for_probes(model_path, images):
    good = (images / "a.png").read_bytes()
    with serving(options(model_path, token="s3cret")) as (address, _):
        refused = call(address, "POST", "/v1/models/m/predict", good)
        assert refused.status == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert "bearer token" in refused.json()["error"]
        wrong = {"Authorization": "Bearer s3cres"}
        assert call(address, "POST", "/v1/models/m/predict", good, wrong).status == 401
        assert call(address, "GET", "/v1/models", None, wrong).status == 401
        right = {"Authorization": "Bearer s3cret"}
        assert call(address, "POST", "/v1/models/m/predict", good, right).status == 200
        assert call(address, "GET", "/metrics", None, right).status == 200
        assert call(address, "GET", "/healthz").status == 200
        assert call(address, "GET", "/readyz").status == 200


def test_cors_is_off_unless_an_origin_is_given(server, model_path):
    origin = {"Origin": "https://app.example.com"}
    answer = call(server[0], "GET", "/v1/models", None, origin)
    assert answer.status == 200 and "access-control-allow-origin" not in answer.headers
    with serving(options(model_path, cors=("https://app.example.com",))) as (address, _):
        preflight = call(address, "OPTIONS", "/v1/models/m/predict", None, {
            **origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert preflight.status == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        other = call(address, "GET", "/v1/models", None, {"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def _post_in_thread(address, body: bytes, headers: dict | None = None) -> tuple[threading.Thread, list]:
    answers: list = []
    thread = threading.Thread(target=lambda: answers.append(
        call(address, "POST", "/v1/models/m/predict", body, headers)))
    thread.start()
    return thread, answers


def _wait_until(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_full_queue_answers_503_with_retry_after(model_path, images):
    good = (images / "a.png").read_bytes()
    # A long batching window keeps the first request's two images queued.
    with serving(options(model_path, max_queue=2, max_batch=8, max_delay_ms=2000)) as (address, state):
        body, headers = multipart([("a.png", good), ("b.png", good)])
        thread, first = _post_in_thread(address, body, headers)
        batcher = state.hosts["m"].batcher
        _wait_until(lambda: batcher.admitted == 2 or first, "the first request to queue")
        busy = call(address, "POST", "/v1/models/m/predict", good)
        assert busy.status == 503 and busy.headers["retry-after"] == "1"
        assert "--max-queue" in busy.json()["error"]
        thread.join(60)
        assert first[0].status == 200 and len(first[0].json()["predictions"]) == 2
        assert 'vision_tasks_errors_total{kind="queue_full"} 1.0' in state.metrics.text().decode()


def test_concurrent_requests_run_as_one_batch(model_path, images):
    good = (images / "a.png").read_bytes()
    with serving(options(model_path, max_batch=2, max_delay_ms=20_000)) as (address, state):
        threads = [_post_in_thread(address, good) for _ in range(2)]
        for thread, _ in threads:
            thread.join(60)
        answers = [answer for _, got in threads for answer in got]
        assert [a.status for a in answers] == [200, 200]
        assert answers[0].body == answers[1].body
        text = state.metrics.text().decode()
        assert 'vision_tasks_batch_size_count{model="m"} 1.0' in text  # one call ...
        assert 'vision_tasks_batch_size_sum{model="m"} 2.0' in text  # ... of both images


def test_slow_body_and_slow_answer_time_out(model_path, images):
    good = (images / "a.png").read_bytes()
    with serving(options(model_path, read_timeout_s=0.5, request_timeout_s=0.5,
                         max_delay_ms=2000)) as (address, state):
        with socket.create_connection(address, timeout=30) as slow:
            slow.sendall(b"POST /v1/models/m/predict HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 1000\r\n\r\n" + good[:10])
            reply = slow.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408"), reply
        late = call(address, "POST", "/v1/models/m/predict", good)  # waits for a batch of 8
        assert late.status == 503 and "--request-timeout" in late.json()["error"]
        _wait_until(lambda: state.hosts["m"].batcher.admitted == 0, "the queue to empty")


def test_draining_server_refuses_new_requests_but_stays_alive(model_path, images):
    with serving(options(model_path)) as (address, state):
        state.draining = True
        refused = call(address, "POST", "/v1/models/m/predict", (images / "a.png").read_bytes())
        assert refused.status == 503 and "shutting down" in refused.json()["error"]
        assert call(address, "GET", "/readyz").status == 503
        assert call(address, "GET", "/healthz").status == 200


def test_sigterm_lets_the_request_in_flight_finish(model_path, images):
    """`vision-tasks serve` as a process: SIGTERM while a request waits for its batch; the
    request is answered, the process exits 0 and new connections are refused."""
    command = [sys.executable, "-m", "vision_tasks", "serve", str(model_path), "--port", "0",
               "--threads", "1", "--lanes", "1", "--max-delay-ms", "2000"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + START_TIMEOUT_S
        while "listening on" not in line:
            assert time.monotonic() < deadline and process.poll() is None, line
            line = process.stderr.readline()
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        thread, answers = _post_in_thread(("127.0.0.1", port), (images / "a.png").read_bytes())

        def queued() -> bool:
            text = call(("127.0.0.1", port), "GET", "/metrics").body.decode()
            return 'vision_tasks_queue_depth{model="m"} 1.0' in text

        _wait_until(queued, "the request to wait for its batch")
        process.send_signal(signal.SIGTERM)
        thread.join(60)
        assert answers and answers[0].status == 200, answers
        assert process.wait(60) == 0
        with pytest.raises(OSError):
            call(("127.0.0.1", port), "GET", "/healthz", timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        process.stderr.close()


def test_server_code_runs_without_torch(model_path):
    assert_runs_without_torch(
        "import asyncio\n"
        "from vision_tasks.export.serve.app import build_app\n"
        "from vision_tasks.export.serve.commands import add_serve\n"
        "from vision_tasks.export.serve.options import ServeOptions\n"
        f"app = build_app(ServeOptions(models={{'m': {str(model_path)!r}}}, threads=1, lanes=1))\n"
        "async def up():\n"
        "    app.state.server.start()\n"
        "    await app.state.server.stop()\n"
        "asyncio.run(up())\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_ray_serve_engine_answers_like_the_local_server(server, model_path, images):
    """`--engine ray` on a local Ray: the same app as a Ray Serve deployment gives the same
    JSON; SIGTERM shuts Serve and Ray down and the command exits 0."""
    pytest.importorskip("ray.serve")
    port = _free_port()
    command = [sys.executable, "-m", "vision_tasks", "serve", str(model_path), "--engine", "ray",
               "--port", str(port), "--threads", "1", "--lanes", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        line = ""
        deadline = time.monotonic() + RAY_TIMEOUT_S
        while "listening on" not in line:
            assert time.monotonic() < deadline and process.poll() is None, line
            line = process.stderr.readline()
        good = (images / "a.png").read_bytes()
        answer = call(("127.0.0.1", port), "POST", "/v1/models/m/predict?top_k=3", good)
        assert answer.status == 200, answer.body
        assert answer.body == call(server[0], "POST", "/v1/models/m/predict?top_k=3", good).body
        wrong = call(("127.0.0.1", port), "POST", "/v1/models/m/predict", b"not an image")
        assert wrong.status == 415 and "error" in wrong.json()
        process.send_signal(signal.SIGTERM)
        assert process.wait(RAY_TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        process.stderr.close()
