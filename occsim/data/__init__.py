"""Occupancy data: the Occ3D-nuScenes reader and writer, and the procedural world's clips."""

from occsim.data.occ3d import Occ3DDataset, load_labels
from occsim.data.occ3d_writer import Occ3DWriter
from occsim.data.poses import FramePose, load_infos_pickle, load_occ3d_annotations, load_poses

__all__ = [
    "FramePose",
    "Occ3DDataset",
    "Occ3DWriter",
    "load_infos_pickle",
    "load_labels",
    "load_occ3d_annotations",
    "load_poses",
]
