"""Location privacy: a ~1 km grid that every shown distance and the distance filter are computed from."""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0088
# 0.009° of latitude ≈ 1.0 km everywhere. Longitude cells are widened by 1/cos(latitude) per row, so every
# cell is about 1 km by 1 km; rows are fixed by the snapped latitude, so a row's cells tile exactly.
CELL_DEGREES = 0.009
MAX_SPEED_KMH = 1000.0  # faster than an airliner: "impossible travel"
JITTER_KM = 1.0  # moves within the grid's own size are never judged


def snap(lat: float, lng: float) -> tuple[float, float]:
    """The centre of the ~1 km cell containing (lat, lng)."""
    row = math.floor(lat / CELL_DEGREES)
    cell_lat = (row + 0.5) * CELL_DEGREES
    lng_step = CELL_DEGREES / max(math.cos(math.radians(cell_lat)), 0.01)
    col = math.floor((lng + 180.0) / lng_step)
    cell_lng = (col + 0.5) * lng_step - 180.0
    if cell_lng > 180.0:  # the last, partial column at the antimeridian
        cell_lng -= 360.0
    return round(min(max(cell_lat, -90.0), 90.0), 6), round(cell_lng, 6)


def haversine_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def cell_distance_km(lat1: float | None, lng1: float | None, lat2: float | None, lng2: float | None) -> float | None:
    """Distance between two snapped cells, or None when either person has no location."""
    if lat1 is None or lng1 is None or lat2 is None or lng2 is None:
        return None
    return haversine_km(lat1, lng1, lat2, lng2)


def shown_distance_km(cell_a: tuple[float, float], cell_b: tuple[float, float]) -> int:
    """What one person is told about another: whole kilometres between snapped cells, at least 1."""
    return max(1, math.ceil(haversine_km(*cell_a, *cell_b)))


def implausible(distance_km: float, elapsed_seconds: float) -> bool:
    """True when covering `distance_km` in `elapsed_seconds` needs more than MAX_SPEED_KMH."""
    if distance_km <= JITTER_KM:
        return False
    hours = max(elapsed_seconds, 1.0) / 3600.0
    return distance_km / hours > MAX_SPEED_KMH


def bounding_box(cell_lat: float, cell_lng: float, radius_km: float) -> tuple[float, float, float, float]:
    """(min_lat, max_lat, min_lng, max_lng) enclosing every cell centre within `radius_km` (index pre-filter)."""
    dlat = radius_km / 111.0 + CELL_DEGREES
    cos_lat = max(math.cos(math.radians(min(abs(cell_lat) + dlat, 89.9))), 0.01)
    dlng = radius_km / (111.0 * cos_lat) + CELL_DEGREES / cos_lat
    return cell_lat - dlat, cell_lat + dlat, cell_lng - dlng, cell_lng + dlng
