"""Reading a service's /metrics in tests."""

from __future__ import annotations

import aiohttp

from runtime.metrics import CONTENT_TYPE


async def scrape(port: int) -> dict[str, float]:
    """The samples of /metrics by name (labels included), after checking the exposition format's headers."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == CONTENT_TYPE
        text = await resp.text()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def histogram_is_whole(samples: dict[str, float], name: str) -> None:
    buckets = [v for k, v in samples.items() if k.startswith(f"{name}_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == samples[f"{name}_count"] >= 1, buckets
    assert samples[f"{name}_sum"] > 0
