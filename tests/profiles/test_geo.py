"""The ~1 km grid: snapping, shown distances and impossible travel."""

from __future__ import annotations

import pytest

from kindred.profiles import geo


@pytest.mark.parametrize(
    ("lat", "lng"), [(52.52, 13.405), (-33.87, 151.21), (0.0, 0.0), (64.15, -21.94), (89.99, 179.99)]
)
def test_a_point_snaps_to_a_cell_centre_within_a_kilometre(lat: float, lng: float) -> None:
    cell = geo.snap(lat, lng)
    assert geo.haversine_km(lat, lng, *cell) < 0.8  # half a cell diagonal is ~0.71 km


def test_points_in_the_same_cell_snap_to_the_same_centre() -> None:
    base = geo.snap(52.520001, 13.405001)
    assert geo.snap(52.520002, 13.405002) == base


def test_snapping_is_stable() -> None:
    cell = geo.snap(48.8566, 2.3522)
    assert geo.snap(*cell) == cell


def test_shown_distance_is_whole_kilometres_and_at_least_one() -> None:
    same = geo.snap(40.0, -3.7)
    assert geo.shown_distance_km(same, same) == 1
    far = geo.snap(40.0, -3.0)
    shown = geo.shown_distance_km(same, far)
    assert isinstance(shown, int) and 59 <= shown <= 62


def test_moving_across_town_in_minutes_is_plausible() -> None:
    assert not geo.implausible(distance_km=12, elapsed_seconds=20 * 60)


def test_a_flight_is_plausible_but_teleporting_is_not() -> None:
    assert not geo.implausible(distance_km=900, elapsed_seconds=2 * 3600)  # 450 km/h
    assert geo.implausible(distance_km=900, elapsed_seconds=30 * 60)  # 1800 km/h


def test_gps_jitter_is_never_implausible() -> None:
    assert not geo.implausible(distance_km=0.5, elapsed_seconds=0)


def test_the_bounding_box_contains_every_point_within_the_radius() -> None:
    min_lat, max_lat, min_lng, max_lng = geo.bounding_box(52.52, 13.405, 50)
    for bearing_point in [(52.97, 13.405), (52.07, 13.405), (52.52, 14.14), (52.52, 12.67)]:
        assert min_lat <= bearing_point[0] <= max_lat and min_lng <= bearing_point[1] <= max_lng
