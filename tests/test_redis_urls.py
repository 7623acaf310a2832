"""Redis URLs: unix sockets, users with passwords, and credentials that never leak."""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time

import pytest
import redis_support
from conftest import make_config

from curriculum import Curriculum
from curriculum.errors import BackendError, ConfigError

SECRET = "s3cret-Pa55"


def _play(curriculum: Curriculum, episodes: int = 50) -> None:
    for _ in range(episodes):
        task = curriculum.get_task()
        curriculum.update_task_performance(task.task_id, 0.5)


def test_unix_socket_url() -> None:
    socket_dir = tempfile.mkdtemp(prefix="curriculum-sock-")
    path = os.path.join(socket_dir, "redis.sock")
    with redis_support.spawned_redis("--unixsocket", path, "--unixsocketperm", "700"):
        config = make_config(num_active_tasks=8, lp_backend_url=f"unix://{path}?db=0")
        with Curriculum(config) as curriculum:
            _play(curriculum)
            assert curriculum.stats()["curriculum/num_completed"] == 50


def test_user_and_password_work_and_never_show(caplog) -> None:
    acl = ["--user", "default", "off", "--user", "trainer", "on", f">{SECRET}", "~*", "&*", "+@all"]
    with redis_support.spawned_redis(*acl) as (open_url, _):
        port = open_url.rsplit(":", 1)[1].split("/")[0]
        url = f"redis://trainer:{SECRET}@127.0.0.1:{port}/0"
        config = make_config(num_active_tasks=8, lp_backend_url=url)
        caplog.set_level(logging.DEBUG)
        with Curriculum(config) as curriculum:
            _play(curriculum)
            shown = [repr(config), str(config), repr(curriculum), repr(config.algorithm_config)]
            assert curriculum.stats()["curriculum/num_completed"] == 50
        wrong = make_config(
            num_active_tasks=8, lp_backend_url=f"redis://trainer:wrong-{SECRET}@127.0.0.1:{port}/0"
        )
        with pytest.raises(BackendError) as caught:
            Curriculum(wrong)
        shown.append(str(caught.value))
        with pytest.raises(ConfigError) as invalid:
            make_config(lp_backend_url=url, lp_session_id="bad session")
        shown.append(str(invalid.value))
    shown.extend(record.getMessage() for record in caplog.records)
    assert "trainer" in shown[0]
    for text in shown:
        assert SECRET not in text, text


def test_unreachable_redis_is_a_backend_error_naming_the_host() -> None:
    port = redis_support.free_port()
    config = make_config(lp_backend_url=f"redis://user:{SECRET}@127.0.0.1:{port}/0")
    with pytest.raises(BackendError) as caught:
        Curriculum(config)
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_unsupported_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="memcached"):
        Curriculum(make_config(lp_backend_url="memcached://host:11211"))


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server of our own that speaks only TLS, with a self-signed certificate."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = redis_support.free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
         "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={cert}"
    try:
        deadline = time.monotonic() + 10
        while not redis_support.answers(url):
            assert server.poll() is None and time.monotonic() < deadline, "TLS redis did not start"
            time.sleep(0.05)
        yield url
    finally:
        server.kill()
        server.wait(timeout=10)


def test_rediss_url_with_a_self_signed_certificate(tls_redis) -> None:
    config = make_config(num_active_tasks=8, lp_backend_url=tls_redis)
    with Curriculum(config) as curriculum:
        _play(curriculum)
        assert curriculum.stats()["curriculum/num_completed"] == 50
    plain = tls_redis.replace("rediss://", "redis://").split("?")[0]
    with pytest.raises(BackendError):  # the server speaks only TLS
        Curriculum(make_config(num_active_tasks=8, lp_backend_url=plain))
