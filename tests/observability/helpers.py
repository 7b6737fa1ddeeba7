"""Reading /metrics the way Prometheus does: parsed with prometheus_client's own text parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


async def scrape(client: httpx.AsyncClient) -> list[Sample]:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The sample `name` whose labels include `labels`; None when there is none."""
    found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    assert len(found) <= 1, f"{name} {labels} matches {len(found)} samples"
    return found[0] if found else None


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """Sum over every sample of `name` with `labels` (0 when none)."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())
