"""Clients that send their bodies slowly hold their own connections, not the gateway: fifty of them leave it
answering everyone else at once, and each is answered 408 in the API's error shape when its time is up, on a
connection then closed. A gateway of this module's own, with a short body timeout, on a port of its own."""
import json
import select
import socket
import time
from contextlib import closing, suppress

import eventlet
import pytest
import requests
from nameko.runners import ServiceRunner

from conftest import ADMIN
from shiori.config import load_config
from shiori.commands.serve import service_class
from support import free_port

BODY_TIMEOUT = 3
SLOW_CLIENTS = 50  # the gateway's max_workers


@pytest.fixture(scope="module")
def slow_body_gateway(system):
    port = free_port()
    runner = ServiceRunner(load_config("gateway", {**system.environment("gateway"), "SHIORI_GATEWAY_PORT": str(port),
                                                   "SHIORI_HTTP_BODY_TIMEOUT": str(BODY_TIMEOUT)}))
    runner.add_service(service_class("gateway"))
    runner.start()
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        with eventlet.Timeout(30, False):  # a worker still waiting on a client must not hold the suite
            runner.stop()
        runner.kill()


def slow_client(port):
    """A log-in whose body never finishes arriving."""
    client = socket.create_connection(("127.0.0.1", port), timeout=BODY_TIMEOUT + 10)
    client.sendall(b"POST /api/v1/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 1000\r\n\r\n{\"username\": ")
    return client


def read_to_end(client):
    answer = b""
    while chunk := client.recv(65536):  # b"" once the gateway closes; the socket's timeout bounds the wait
        answer += chunk
    return answer


def test_fifty_slow_bodies_do_not_hold_the_gateway_and_each_is_answered_408(slow_body_gateway):
    url, port = slow_body_gateway
    clients = [slow_client(port) for _ in range(SLOW_CLIENTS)]
    try:
        started = time.monotonic()
        response = requests.post(f"{url}/api/v1/auth/token", timeout=BODY_TIMEOUT - 1,
                                 json={"username": ADMIN["username"], "password": ADMIN["password"]})
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < BODY_TIMEOUT - 1
        readable, _, _ = select.select(clients, [], [], 0)
        assert readable == []  # the slow ones are still being waited for

        for client in clients:
            head, _, body = read_to_end(client).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408 "), head
            assert b"connection: close" in head.lower()
            assert json.loads(body)["error"]["code"] == "REQUEST_TIMEOUT"
        assert time.monotonic() - started < BODY_TIMEOUT + 5
    finally:
        for client in clients:
            with suppress(OSError):
                client.close()


def test_a_body_sent_in_time_is_read_even_in_pieces(slow_body_gateway):
    _url, port = slow_body_gateway
    body = json.dumps({"username": ADMIN["username"], "password": ADMIN["password"]}).encode()
    with closing(socket.create_connection(("127.0.0.1", port), timeout=BODY_TIMEOUT + 10)) as client:
        client.sendall(b"POST /api/v1/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                       b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        for piece in (body[:10], body[10:]):
            client.sendall(piece)
            time.sleep(BODY_TIMEOUT / 3)
        assert read_to_end(client).startswith(b"HTTP/1.1 200 ")
