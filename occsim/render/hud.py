"""The driving view: BEV with the planned trajectory, a HUD panel and a class legend."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from occsim.labels import CLASS_NAMES, FREE_ID, PALETTE
from occsim.render.bev import render_bev, top_visible

PANEL_WIDTH = 300
PANEL_COLOR = (16, 16, 20)
TEXT_COLOR = (235, 235, 235)
BANNER_COLOR = (255, 80, 60)
LINE_HEIGHT = 24
LEGEND_ROW = 16
MARGIN = 10


def _font(size: int):
    import pygame  # fonts need no display

    if not pygame.font.get_init():
        pygame.font.init()
    return pygame.font.Font(None, size)


def _fit(font, text: str, width: int) -> str:
    """``text`` shortened with an ellipsis until it renders within ``width`` pixels."""
    if font.size(text)[0] <= width:
        return text
    while text and font.size(text + "…")[0] > width:
        text = text[:-1]
    return text + "…"


def hud_panel(
    lines: Sequence[str],
    height: int,
    width: int = PANEL_WIDTH,
    classes: Sequence[int] | None = None,
) -> np.ndarray:
    """RGB ``(height, width, 3)`` panel: the text ``lines`` above a legend of ``classes``
    (default: every class but free). The legend takes as many columns as the height left
    under the text needs, so every class in it is always drawn."""
    legend = tuple(int(c) for c in (range(FREE_ID) if classes is None else classes))
    return _panel(tuple(lines), height, width, legend).copy()


# Text rendering is most of a panel's cost, and a real-time view redraws the same panel for
# many frames in a row.
@lru_cache(maxsize=16)
def _panel(lines: tuple[str, ...], height: int, width: int, classes: tuple[int, ...]):
    import pygame

    surface = pygame.Surface((width, height))
    surface.fill(PANEL_COLOR)
    font, small = _font(24), _font(18)
    y = MARGIN
    for line in lines:
        surface.blit(font.render(_fit(font, line, width - 2 * MARGIN), True, TEXT_COLOR), (10, y))
        y += LINE_HEIGHT
    y += 8
    legend = [c for c in classes if c != FREE_ID]
    rows = max((height - y - 4) // LEGEND_ROW, 1)
    columns = max(math.ceil(len(legend) / rows), 1)
    rows = math.ceil(len(legend) / columns)  # balance the columns
    column_width = (width - 2 * MARGIN) // columns
    for index, class_id in enumerate(legend):
        column, row = divmod(index, rows)
        x, top = MARGIN + column * column_width, y + row * LEGEND_ROW
        pygame.draw.rect(surface, tuple(int(c) for c in PALETTE[class_id]), (x, top + 2, 12, 12))
        name = _fit(small, CLASS_NAMES[class_id].replace("_", " "), column_width - 22)
        surface.blit(small.render(name, True, TEXT_COLOR), (x + 18, top))
    panel = pygame.surfarray.array3d(surface).swapaxes(0, 1).copy()
    panel.setflags(write=False)
    return panel


def draw_banner(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` with ``text`` in a dark box across its middle (e.g. what ended the episode)."""
    import pygame

    font = _font(32)
    rendered = font.render(text, True, BANNER_COLOR)
    w, h = rendered.get_size()
    out = image.copy()
    top, left = (out.shape[0] - h) // 2, max((out.shape[1] - w) // 2, 0)
    box = out[max(top - 8, 0) : top + h + 8]
    box[:] = (box * 0.25).astype(np.uint8)
    alpha = pygame.surfarray.array_alpha(rendered).T[:, : out.shape[1] - left, None] / 255.0
    region = out[top : top + h, left : left + alpha.shape[1]]
    region[:] = (region * (1 - alpha) + np.asarray(BANNER_COLOR) * alpha).astype(np.uint8)
    return out


def driving_view(
    frame: np.ndarray,
    lines: Sequence[str],
    plan: np.ndarray | None = None,
    scale: int = 2,
    banner: str | None = None,
) -> np.ndarray:
    """BEV of ``frame`` with the ``plan`` waypoints (metres, ego frame), an optional
    ``banner`` across it, and a HUD panel whose legend names every class in view."""
    bev = render_bev(frame, scale=scale, trajectory=plan)
    if banner:
        bev = draw_banner(bev, banner)
    in_view = [int(c) for c in np.unique(top_visible(frame)[0]) if c != FREE_ID]
    return np.concatenate([bev, hud_panel(lines, bev.shape[0], classes=in_view)], axis=1)
