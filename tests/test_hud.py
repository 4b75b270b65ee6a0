"""The driving view's HUD: every class in view is in the legend, however many text lines."""

import os

import numpy as np
import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
pytest.importorskip("pygame")

from occsim.labels import BUS, CAR, DRIVEABLE_SURFACE, FREE_ID, PALETTE, SIDEWALK
from occsim.render.hud import PANEL_WIDTH, driving_view, hud_panel


def swatches(image: np.ndarray) -> set[int]:
    """Classes whose colour fills a legend swatch (12 x 12 pixels) somewhere in ``image``."""
    pixels = image.reshape(-1, 3)
    return {c for c in range(FREE_ID) if np.all(pixels == PALETTE[c], axis=1).sum() >= 144}


@pytest.mark.parametrize("lines", [0, 8, 12])
def test_legend_shows_every_class_whatever_the_text(lines):
    text = [f"line {i}" for i in range(lines)]
    panel = hud_panel(text, 400)
    assert panel.shape == (400, PANEL_WIDTH, 3)
    assert swatches(panel) == set(range(FREE_ID))


def test_driving_view_legend_names_the_classes_in_view():
    frame = np.full((200, 200, 16), FREE_ID, dtype=np.uint8)
    frame[:, :, 2] = SIDEWALK
    frame[:, 80:120, 2] = DRIVEABLE_SURFACE
    frame[150:160, 95:105, 3:6] = CAR
    frame[20:30, 95:105, 3:6] = BUS
    frame[20:30, 95:105, 9] = CAR  # the top visible class: the bus under it is not in view
    view = driving_view(frame, ["speed 0 km/h"] * 9)
    assert view.shape == (400, 400 + PANEL_WIDTH, 3)
    assert swatches(view[:, 400:]) == {DRIVEABLE_SURFACE, SIDEWALK, CAR}


def test_banner_says_what_ended_the_episode():
    frame = np.full((200, 200, 16), FREE_ID, dtype=np.uint8)
    frame[:, :, 2] = DRIVEABLE_SURFACE
    plain = driving_view(frame, [])
    crashed = driving_view(frame, [], banner="collision - press R")
    middle = slice(180, 220)
    assert not np.array_equal(plain[middle, :400], crashed[middle, :400])
    assert np.array_equal(plain[:150], crashed[:150])  # only the middle band changes
