"""The SQLite doorbell: datagrams to the workers of other processes, stale sockets removed."""

import socket

import pytest
from django.db import connection

from django_atw import doorbell

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="the doorbell serves SQLite only")


def other_process_socket(name: str) -> socket.socket:
    """A datagram socket in the doorbell folder named as another process's would be."""
    where = doorbell.folder()
    assert where is not None
    where.mkdir(mode=0o700, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(where / f"{name}{doorbell.SUFFIX}"))
    sock.setblocking(False)
    return sock


def test_a_ring_reaches_other_processes_sockets_with_queues_and_cancels():
    sock = other_process_socket("999999991-0")
    try:
        doorbell.ring(queues=["mail", "default", "mail"])
        doorbell.ring(cancel="task-7")
        assert doorbell.parse(sock.recv(65536)) == ({"default", "mail"}, [])
        assert doorbell.parse(sock.recv(65536)) == (set(), ["task-7"])
    finally:
        doorbell.unbind(sock)


def test_a_ring_removes_the_socket_of_a_process_that_is_gone():
    sock = other_process_socket("999999992-0")
    path = sock.getsockname()
    sock.close()  # killed: its file stays behind
    doorbell.ring(queues=["default"])
    assert not (doorbell.folder() / path.rsplit("/", 1)[1]).exists()


def test_a_worker_socket_is_bound_in_the_databases_folder_and_removed_when_closed():
    where = doorbell.folder()
    sock = doorbell.bind(where)
    path = sock.getsockname()
    assert path.startswith(str(where))
    doorbell.unbind(sock)
    assert not (where / path.rsplit("/", 1)[1]).exists()


def test_no_folder_for_an_in_memory_database(settings):
    name = connection.settings_dict["NAME"]
    try:
        connection.settings_dict["NAME"] = ":memory:"
        assert doorbell.folder() is None
    finally:
        connection.settings_dict["NAME"] = name
