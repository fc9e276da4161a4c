"""Writes packet.bin for `remora bpf run --data`: one Ethernet + IPv4 + UDP frame, 64 bytes.

python3 examples/bpf/packet.py examples/build/packet.bin
"""

import struct
import sys

payload = b"hello, xdp".ljust(22, b"\0")
udp = struct.pack("!HHHH", 40000, 53, 8 + len(payload), 0) + payload
ip_header = struct.pack(
    "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
    bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]),
)  # fmt: skip
words = struct.unpack("!10H", ip_header)
checksum = sum(words)
checksum = ~((checksum & 0xFFFF) + (checksum >> 16)) & 0xFFFF
ip_header = ip_header[:10] + struct.pack("!H", checksum) + ip_header[12:]
destination, source, ipv4 = (
    bytes.fromhex("020000000002"),
    bytes.fromhex("020000000001"),
    b"\x08\x00",
)
ethernet = destination + source + ipv4
frame = ethernet + ip_header + udp
assert len(frame) == 64, len(frame)
with open(sys.argv[1] if len(sys.argv) > 1 else "packet.bin", "wb") as out:
    out.write(frame)
