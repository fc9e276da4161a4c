"""Large transfers stream through a separate proxy process whose memory stays bounded."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.proxy.harness import bootstrap, cluster, demo_upstreams, http_listener
from tests.proxy.procs import peak_rss_mib, rss_mib, start_proxy_process

GIB = 1024**3


async def _curl(*args: str) -> str:
    process = await asyncio.create_subprocess_shell(" ".join(args), stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    assert process.returncode == 0, args
    return out.decode()


async def test_1gib_upload_and_download_keep_rss_low(tmp_path: Path) -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])], admin=False)
        process, ports = await start_proxy_process(config, tmp_path)
        try:
            url = f"http://127.0.0.1:{ports['http']}"
            size = await _curl("curl -s -o /dev/null -w '%{size_download}'", f"{url}/bytes/{GIB}")
            assert int(size) == GIB
            out = await _curl(
                f"head -c {GIB} /dev/zero | curl -s -T - -H 'expect:'", f"{url}/upload"
            )
            assert json.loads(out)["body_bytes"] == GIB
            assert peak_rss_mib(process.pid) < 100
        finally:
            process.terminate()
            await process.wait()


async def test_client_that_stops_reading_does_not_grow_memory(tmp_path: Path) -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])], admin=False)
        process, ports = await start_proxy_process(config, tmp_path)
        try:
            before = rss_mib(process.pid)
            reader, writer = await asyncio.open_connection("127.0.0.1", ports["http"])
            writer.write(f"GET /bytes/{GIB} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
            await reader.readexactly(1024)  # the response started...
            await asyncio.sleep(1.5)  # ...and then the client reads nothing
            grown = rss_mib(process.pid) - before
            assert grown < 20, f"proxy grew by {grown:.1f} MiB for a stalled client"
            writer.close()
        finally:
            process.terminate()
            await process.wait()
