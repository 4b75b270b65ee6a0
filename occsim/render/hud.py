"""The driving view: BEV with the planned trajectory, a HUD panel and a class legend."""

from __future__ import annotations

import numpy as np

from occsim.labels import CLASS_NAMES, FREE_ID, PALETTE
from occsim.render.bev import render_bev

PANEL_WIDTH = 260
PANEL_COLOR = (16, 16, 20)
TEXT_COLOR = (235, 235, 235)


def _font(size: int):
    import pygame  # fonts need no display

    if not pygame.font.get_init():
        pygame.font.init()
    return pygame.font.Font(None, size)


def hud_panel(lines: list[str], height: int, width: int = PANEL_WIDTH) -> np.ndarray:
    """RGB ``(height, width, 3)`` panel: the text ``lines`` above a class legend."""
    import pygame

    surface = pygame.Surface((width, height))
    surface.fill(PANEL_COLOR)
    font, small = _font(24), _font(18)
    y = 10
    for line in lines:
        surface.blit(font.render(line, True, TEXT_COLOR), (10, y))
        y += 24
    y += 8
    for class_id, name in enumerate(CLASS_NAMES):
        if class_id == FREE_ID or y > height - 16:
            continue
        pygame.draw.rect(surface, tuple(int(c) for c in PALETTE[class_id]), (10, y + 2, 12, 12))
        surface.blit(small.render(name, True, TEXT_COLOR), (28, y))
        y += 16
    return pygame.surfarray.array3d(surface).swapaxes(0, 1).copy()


def driving_view(
    frame: np.ndarray, lines: list[str], plan: np.ndarray | None = None, scale: int = 2
) -> np.ndarray:
    """BEV of ``frame`` with the ``plan`` waypoints (metres, ego frame) and a HUD panel."""
    bev = render_bev(frame, scale=scale, trajectory=plan)
    return np.concatenate([bev, hud_panel(lines, bev.shape[0])], axis=1)
