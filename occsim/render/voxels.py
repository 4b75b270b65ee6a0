"""open3d voxel views: a live window with a chase camera, and offscreen frames.

Uses the legacy ``o3d.visualization.Visualizer`` (non-blocking; headless it falls back to
EGL with a hidden window), which renders ~40k voxels at several frames per second on a
CPU, where ``OffscreenRenderer`` takes about a second a frame.
"""

from __future__ import annotations

import numpy as np

from occsim.grid import EGO_HEIGHT, EGO_LENGTH, EGO_WIDTH, OCC3D_GRID, GridSpec
from occsim.labels import FREE_ID, PALETTE

EGO_RGB = (0.9, 0.15, 0.15)
# Chase camera: behind and above the ego, looking ahead (open3d's "front" points at the eye).
CAMERA_FRONT = (-1.0, 0.0, 0.75)
CAMERA_LOOKAT = (12.0, 0.0, 0.0)
CAMERA_ZOOM = 0.28


def _open3d():
    try:
        import open3d as o3d
    except ImportError as error:  # pragma: no cover - depends on system packages
        raise ImportError(
            "the 3D view needs open3d (pip install open3d-cpu) and the system library "
            f"libusb-1.0-0: {error}"
        ) from error
    return o3d


def voxel_points(frame: np.ndarray, grid: GridSpec = OCC3D_GRID) -> tuple[np.ndarray, np.ndarray]:
    """Metric centres ``(N, 3)`` and RGB colours ``(N, 3)`` in [0, 1] of occupied voxels."""
    indices = np.argwhere(frame != FREE_ID)
    colours = PALETTE[frame[tuple(indices.T)]].astype(np.float64) / 255.0
    return grid.index_to_metric(indices), colours


class VoxelViewer:
    """An open3d window showing one occupancy frame at a time, the ego car at the origin
    and a camera that chases it (frames are ego-centred, so the camera stays put).

    Args:
        visible: open a window on screen; ``False`` renders offscreen (EGL).
        width, height: window size in pixels.
        grid: the grid of the frames.
        left, top: screen position of the window (e.g. beside the pygame one).
    """

    def __init__(
        self,
        visible: bool = True,
        width: int = 960,
        height: int = 540,
        grid: GridSpec = OCC3D_GRID,
        left: int = 50,
        top: int = 50,
    ) -> None:
        o3d = _open3d()
        self.o3d, self.grid = o3d, grid
        self.vis = o3d.visualization.Visualizer()
        created = self.vis.create_window(
            "occsim 3D", width=width, height=height, left=left, top=top, visible=visible
        )
        if not created:
            raise RuntimeError("open3d could not create a window (no display and no EGL?)")
        options = self.vis.get_render_option()
        options.background_color = np.array([0.09, 0.09, 0.11])
        ego = o3d.geometry.TriangleMesh.create_box(EGO_LENGTH, EGO_WIDTH, EGO_HEIGHT)
        # Wheels on the road surface (the top of z index 2).
        ego.translate((-EGO_LENGTH / 2, -EGO_WIDTH / 2, grid.lower[2] + 3 * grid.voxel_size))
        ego.paint_uniform_color(EGO_RGB)
        ego.compute_vertex_normals()
        self.vis.add_geometry(ego)
        self._voxels = None

    def update(self, frame: np.ndarray) -> None:
        """Show ``frame (X, Y, Z)`` and process window events (non-blocking)."""
        o3d = self.o3d
        points, colours = voxel_points(frame, self.grid)
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
        cloud.colors = o3d.utility.Vector3dVector(colours)
        voxels = o3d.geometry.VoxelGrid.create_from_point_cloud(cloud, self.grid.voxel_size)
        first = self._voxels is None
        if not first:
            self.vis.remove_geometry(self._voxels, reset_bounding_box=False)
        self.vis.add_geometry(voxels, reset_bounding_box=first)
        self._voxels = voxels
        if first:
            view = self.vis.get_view_control()
            view.set_front(CAMERA_FRONT)
            view.set_lookat(CAMERA_LOOKAT)
            view.set_up((0.0, 0.0, 1.0))
            view.set_zoom(CAMERA_ZOOM)
        self.vis.poll_events()
        self.vis.update_renderer()

    def capture(self) -> np.ndarray:
        """The current view as an RGB image ``(height, width, 3)`` uint8."""
        image = np.asarray(self.vis.capture_screen_float_buffer(do_render=True))
        return (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)

    def close(self) -> None:
        self.vis.destroy_window()


def render_voxels(frame: np.ndarray, width: int = 640, height: int = 360) -> np.ndarray:
    """One offscreen RGB image of ``frame``; for many frames keep a :class:`VoxelViewer`."""
    viewer = VoxelViewer(visible=False, width=width, height=height)
    try:
        viewer.update(frame)
        return viewer.capture()
    finally:
        viewer.close()
