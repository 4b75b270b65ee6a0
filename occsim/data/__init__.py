"""Occupancy data: the Occ3D-nuScenes reader and writer, and the procedural world's clips."""

from occsim.data.occ3d import Occ3DDataset, load_labels
from occsim.data.occ3d_writer import Occ3DWriter
from occsim.data.poses import FramePose, load_infos_pickle, load_occ3d_annotations, load_poses
from occsim.data.procedural import ProceduralClips, export_occ3d

__all__ = [
    "FramePose",
    "Occ3DDataset",
    "Occ3DWriter",
    "ProceduralClips",
    "export_occ3d",
    "load_infos_pickle",
    "load_labels",
    "load_occ3d_annotations",
    "load_poses",
]
