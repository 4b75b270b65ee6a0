"""The driving window: a pygame window for the driving view, the open3d view beside it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

WINDOW_LEFT, WINDOW_TOP, GAP = 40, 60, 12
TITLE = "occsim drive: arrows/WASD, space brakes, R resets, P pauses, Esc quits"


class DriveWindow:
    """Shows driving-view images in pygame and, with ``three_d``, occupancy frames in an
    open3d window placed to its right (headless under ``SDL_VIDEODRIVER=dummy``: the
    open3d view then renders offscreen)."""

    def __init__(self, three_d: bool = False, title: str = TITLE) -> None:
        import pygame

        # SDL reads the position when the window opens; keep one the user set.
        os.environ.setdefault("SDL_VIDEO_WINDOW_POS", f"{WINDOW_LEFT},{WINDOW_TOP}")
        pygame.display.init()
        self.three_d, self.title = three_d, title
        self.screen = None
        self.viewer = None

    def show(self, image: np.ndarray) -> None:
        """Draw an RGB ``(H, W, 3)`` image (the window opens at the first one's size)."""
        import pygame

        if self.screen is None:
            self.screen = pygame.display.set_mode(image.shape[1::-1])
            pygame.display.set_caption(self.title)
        self.screen.blit(pygame.surfarray.make_surface(image.swapaxes(0, 1)), (0, 0))
        pygame.display.flip()

    def show_3d(self, frame: np.ndarray) -> None:
        """Show an occupancy frame ``(X, Y, Z)`` in the open3d view (if ``three_d``)."""
        if not self.three_d:
            return
        if self.viewer is None:
            from occsim.render.voxels import VoxelViewer

            width = self.screen.get_width() if self.screen is not None else 700
            self.viewer = VoxelViewer(
                visible=os.environ.get("SDL_VIDEODRIVER") != "dummy",
                left=WINDOW_LEFT + width + GAP,
                top=WINDOW_TOP,
            )
        self.viewer.update(frame)

    def save(self, path: str | Path) -> None:
        """The window as a PNG at ``path`` and the open3d view beside it (``*_3d.png``)."""
        import pygame

        if self.screen is None:
            return
        pygame.image.save(self.screen, str(path))
        if self.viewer is not None:
            import imageio.v2 as imageio

            path = Path(path)
            imageio.imwrite(path.with_name(path.stem + "_3d.png"), self.viewer.capture())

    def close(self) -> None:
        import pygame

        if self.viewer is not None:
            self.viewer.close()
            self.viewer = None
        pygame.display.quit()
