import numpy as np
import pytest

from occsim.geometry import local_to_world, poses_to_trajectory, quaternion_to_yaw, world_to_local
from occsim.grid import EGO_LENGTH, EGO_WIDTH, OCC3D_GRID, GridSpec
from occsim.labels import CLASS_NAMES, FREE_ID, NUM_CLASSES, PALETTE


def test_label_contract():
    assert NUM_CLASSES == 18 and CLASS_NAMES[FREE_ID] == "free"
    assert CLASS_NAMES[4] == "car" and CLASS_NAMES[11] == "driveable_surface"
    assert PALETTE.shape == (18, 3) and PALETTE.dtype == np.uint8
    assert tuple(PALETTE[1]) == (255, 120, 50) and tuple(PALETTE[16]) == (0, 175, 0)
    with pytest.raises(ValueError):
        PALETTE[0, 0] = 1


def cielab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (0..255) -> CIELAB (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


def test_palette_colours_are_told_apart():
    from occsim.render.bev import BACKGROUND

    assert np.allclose(cielab([255, 255, 255]), [100, 0, 0], atol=0.01)
    assert np.allclose(cielab([255, 0, 0]), [53.24, 80.09, 67.20], atol=0.05)
    # Every drawn class, and the background the BEV leaves free cells in.
    names = [*CLASS_NAMES[:FREE_ID], "background"]
    lab = cielab(np.concatenate([PALETTE[:FREE_ID], BACKGROUND[None]]))
    delta_e = np.linalg.norm(lab[:, None] - lab[None], axis=-1) + np.eye(len(lab)) * 1e9
    i, j = np.unravel_index(np.argmin(delta_e), delta_e.shape)
    assert delta_e[i, j] >= 25, f"{names[i]} and {names[j]}: delta E {delta_e[i, j]:.1f}"


def test_grid_geometry():
    assert OCC3D_GRID.shape == (200, 200, 16)
    # The ego sits at the corner of the four central cells.
    assert np.array_equal(OCC3D_GRID.metric_to_index([0.01, 0.01, 0.01]), [100, 100, 2])
    assert np.array_equal(OCC3D_GRID.metric_to_index([-40.0, -40.0, -1.0]), [0, 0, 0])
    centres = OCC3D_GRID.index_to_metric(np.array([[0, 199, 15]]))
    assert np.allclose(centres, [[-39.8, 39.8, 5.2]])
    idx = np.array([[0, 0, 0], [199, 199, 15], [200, 0, 0], [-1, 5, 5]])
    assert OCC3D_GRID.contains(idx).tolist() == [True, True, False, False]
    # Round trip of random points.
    points = np.random.default_rng(0).uniform([-40, -40, -1], [40, 40, 5.4], size=(100, 3))
    back = OCC3D_GRID.index_to_metric(OCC3D_GRID.metric_to_index(points))
    assert np.all(np.abs(back - points) <= 0.2 + 1e-9)


def test_ego_footprint_matches_box_area():
    footprint = OCC3D_GRID.ego_footprint()
    area = footprint.sum() * 0.4**2
    assert abs(area - EGO_LENGTH * EGO_WIDTH) < 2.0
    assert footprint[100, 100] and not footprint[110, 100]


def test_grid_rejects_bad_range():
    with pytest.raises(ValueError, match="whole number"):
        GridSpec(point_cloud_range=(-40, -40, -1, 40, 40, 5.3), voxel_size=0.4)
    with pytest.raises(ValueError, match="6 values"):
        GridSpec(point_cloud_range=(0, 0, 1), voxel_size=0.4)


def test_pose_helpers():
    yaw = 0.7
    assert np.isclose(quaternion_to_yaw([np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]), yaw)
    pts = np.array([[1.0, 2.0], [-3.0, 4.0]])
    assert np.allclose(local_to_world(world_to_local(pts, [5, 6], 1.1), [5, 6], 1.1), pts)
    traj = poses_to_trajectory(np.array([[10.0, 10.0], [10.0, 12.0]]), np.array([np.pi / 2] * 2))
    assert traj.dtype == np.float32
    assert np.allclose(traj, [[0, 0, 0], [2, 0, 0]], atol=1e-6)


def test_column_any_matches_any_along_z_whatever_the_layout():
    from occsim.grid import column_any

    rng = np.random.default_rng(0)
    mask = rng.random((30, 20, 16)) > 0.97  # some columns with one voxel set, most empty
    mask[3, 4, 15] = True  # the last voxel of a column (the second 64-bit word's last byte)
    expected = mask.any(axis=-1)
    assert 0 < expected.sum() < expected.size
    assert np.array_equal(column_any(mask), expected)
    # A strided view and a column height that is not a multiple of 8 take the plain path.
    assert np.array_equal(column_any(mask[::2]), mask[::2].any(axis=-1))
    assert np.array_equal(column_any(mask[:, :, :12]), mask[:, :, :12].any(axis=-1))
    assert column_any(mask).shape == (30, 20) and column_any(mask).dtype == np.bool_


@pytest.mark.parametrize(
    "classes",
    [
        (2, 3, 4, 5, 6, 7, 9, 10),
        (11, 12, 13, 14),
        (17, 11, 12, 13, 14, 2, 3, 4, 5, 6, 7, 9, 10),
        (0, 255),
        (1, 3, 5, 7, 9),
    ],
)
def test_class_mask_equals_the_lookup_table(classes):
    from occsim.labels import ClassMask, class_lookup

    frame = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 4, 12)  # every id
    mask = ClassMask(classes)
    assert np.array_equal(mask(frame), class_lookup(classes)[frame])
    assert mask(frame).dtype == np.bool_ and mask(frame).shape == frame.shape
    # Wider integer arrays (class ids of a lookup) take the table.
    assert np.array_equal(mask(frame.astype(np.int64)), class_lookup(classes)[frame])


def test_class_mask_refuses_ids_a_uint8_frame_cannot_hold():
    from occsim.labels import ClassMask

    with pytest.raises(ValueError, match="class ids must lie in 0..255"):
        ClassMask((-1, 4))
    with pytest.raises(ValueError, match="class ids must lie in 0..255"):
        ClassMask((4, 256))


def test_nearest_set_cell_equals_the_whole_view_transform(monkeypatch):
    from scipy.ndimage import distance_transform_edt

    from occsim import nearest_cell

    shapes = []

    def recorded(mask, **kwargs):
        shapes.append(mask.shape)
        return distance_transform_edt(mask, **kwargs)

    monkeypatch.setattr(nearest_cell, "distance_transform_edt", recorded)
    rng = np.random.default_rng(0)
    for trial in range(200):
        mask = np.zeros((200, 200), bool)
        if trial % 2:  # a known band behind unknown space ahead, as a step sees it
            mask[: rng.integers(120, 190)] = rng.random((200, 200))[:1] < 0.9
            qx, qy = np.nonzero(~mask.any(axis=1)[:, None].repeat(200, 1))
        else:  # a lattice: many equidistant candidates, ties everywhere
            mask[:: rng.integers(2, 9), :: rng.integers(2, 9)] = True
            qx, qy = np.nonzero(~mask & (rng.random((200, 200)) < 0.01))
            keep = (qx > 50) & (qx < 80)
            qx, qy = qx[keep], qy[keep]
        sx, sy = distance_transform_edt(~mask, return_distances=False, return_indices=True)
        nx, ny = nearest_cell.nearest_set_cell(mask, qx, qy)
        assert np.array_equal(nx, sx[qx, qy]) and np.array_equal(ny, sy[qx, qy])
    # Most answers came from a crop around the queries, not the whole view.
    assert sum(shape[0] < 100 for shape in shapes) > 150
    empty = np.zeros((0,), np.int64)
    assert [a.size for a in nearest_cell.nearest_set_cell(mask, empty, empty)] == [0, 0]
    with pytest.raises(ValueError, match="no set cell"):
        nearest_cell.nearest_set_cell(np.zeros((5, 5), bool), np.array([1]), np.array([1]))
    one = np.eye(5, dtype=bool)
    with pytest.raises(ValueError, match="2-D"):
        nearest_cell.nearest_set_cell(one[None], np.array([1]), np.array([1]))
    with pytest.raises(ValueError, match="one length"):
        nearest_cell.nearest_set_cell(one, np.array([1, 2]), np.array([1]))
    for qx, qy in ((-1, 0), (0, 5)):
        with pytest.raises(ValueError, match="lie in the 5 x 5 mask"):
            nearest_cell.nearest_set_cell(one, np.array([qx]), np.array([qy]))
