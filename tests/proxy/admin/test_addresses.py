from __future__ import annotations

from remora.proxy.admin.addresses import address_string, socket_address


def test_address_string_brackets_ipv6() -> None:
    assert address_string("127.0.0.1", 80) == "127.0.0.1:80"
    assert address_string("::1", 80) == "[::1]:80"


def test_socket_address_proto() -> None:
    message = socket_address("::1", 9901)
    assert message.socket_address.address == "::1"
    assert message.socket_address.port_value == 9901
