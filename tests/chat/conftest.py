"""Discovery's `person` factory: compatible people with locations, made through the API."""

from tests.discovery.conftest import person

__all__ = ["person"]
