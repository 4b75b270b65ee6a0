import json
import pickle

import numpy as np
import pytest

from occsim.data import Occ3DDataset, Occ3DWriter, load_labels, load_poses


@pytest.mark.parametrize("poses", ["annotations.json", "infos.pkl"])
def test_reads_clips_in_both_pose_formats(occ3d_root, poses):
    root = occ3d_root["root"]
    dataset = Occ3DDataset(root, poses=root / poses, clip_len=3, stride=1, with_camera_mask=True)
    # scene-0001 has 5 frames -> 3 windows, scene-0002 has 3 -> 1: windows never cross scenes.
    assert len(dataset) == 4
    item = dataset[1]
    assert item["scene"] == "scene-0001"
    assert item["tokens"] == ["scene-0001-tok1", "scene-0001-tok2", "scene-0001-tok3"]
    assert item["occupancy"].shape == (3, 200, 200, 16) and item["occupancy"].dtype == np.uint8
    assert np.array_equal(item["occupancy"], occ3d_root["semantics"]["scene-0001"][1:4])
    assert item["mask_camera"].dtype == bool
    assert np.array_equal(item["mask_camera"], item["occupancy"] != 17)
    # Frame 1 is turned 0.1 rad left of the 2 m/frame course, so the course is to its right.
    step = 2.0 * np.array([np.cos(0.1), -np.sin(0.1)])
    expected = np.array([[0, 0, 0], [*step, 0.1], [*(2 * step), 0.2]], dtype=np.float32)
    assert item["trajectory"].dtype == np.float32
    assert np.allclose(item["trajectory"], expected, atol=1e-5)
    assert np.allclose(dataset[0]["trajectory"], [[0, 0, 0], [2, 0, 0.1], [4, 0, 0.2]], atol=1e-5)
    assert dataset[-1]["scene"] == "scene-0002"


def test_stride_split_and_scene_filters(occ3d_root):
    root = occ3d_root["root"]
    assert len(Occ3DDataset(root, clip_len=2, stride=2)) == 2 + 1
    assert len(Occ3DDataset(root, clip_len=3, split="val")) == 1
    assert len(Occ3DDataset(root, clip_len=2, scenes=["scene-0002"])) == 2
    with pytest.raises(ValueError, match="split 'test'"):
        Occ3DDataset(root, clip_len=2, split="test")
    with pytest.raises(ValueError, match="not in"):
        Occ3DDataset(root, clip_len=2, scenes=["scene-9999"])


def test_orders_frames_by_prev_next_without_timestamps(occ3d_root, tmp_path):
    root = occ3d_root["root"]
    data = json.loads((root / "annotations.json").read_text())
    for frames in data["scene_infos"].values():
        for frame in frames.values():
            del frame["timestamp"]
    path = tmp_path / "no_time.json"
    path.write_text(json.dumps(data))
    scenes, splits = load_poses(path)
    assert [f.token for f in scenes["scene-0001"]] == [f"scene-0001-tok{t}" for t in range(5)]
    assert splits == {"train": ["scene-0001"], "val": ["scene-0002"]}


def test_short_scene_is_an_error_unless_dropped(occ3d_root):
    root = occ3d_root["root"]
    with pytest.raises(ValueError, match=r"scene 'scene-0002'.*3 frames.*clip_len=4"):
        Occ3DDataset(root, clip_len=4)
    assert len(Occ3DDataset(root, clip_len=4, drop_short_scenes=True)) == 2


def test_bad_files_give_clear_errors(occ3d_root, tmp_path):
    root = occ3d_root["root"]
    label = root / "gts/scene-0001/scene-0001-tok0/labels.npz"
    good = load_labels(label)
    assert good["semantics"].shape == (200, 200, 16)

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(label.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.npz.*not a readable"):
        load_labels(truncated)
    with pytest.raises(FileNotFoundError, match="labels.npz"):
        load_labels(tmp_path / "gts/x/y/labels.npz")

    bad_ids = tmp_path / "bad_ids.npz"
    np.savez(bad_ids, semantics=np.full((200, 200, 16), 20, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"bad_ids.npz holds class ids in \[20, 20\]"):
        load_labels(bad_ids)
    wrong_shape = tmp_path / "wrong_shape.npz"
    np.savez(wrong_shape, semantics=np.zeros((100, 100, 16), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"spatial shape \(200, 200, 16\)"):
        load_labels(wrong_shape)
    no_key = tmp_path / "no_key.npz"
    np.savez(no_key, labels=np.zeros((200, 200, 16), dtype=np.uint8))
    with pytest.raises(ValueError, match="expected 'semantics'"):
        load_labels(no_key)

    # A missing labels.npz surfaces when the clip is read, naming the file.
    label.unlink()
    with pytest.raises(FileNotFoundError, match="scene-0001-tok0"):
        Occ3DDataset(root, clip_len=2)[0]


def test_bad_pose_files(occ3d_root, tmp_path):
    root = occ3d_root["root"]
    with open(root / "infos.pkl", "rb") as handle:
        infos = pickle.load(handle)
    del infos["infos"]["scene-0001"][2]["ego2global_rotation"]
    broken = tmp_path / "broken.pkl"
    with open(broken, "wb") as handle:
        pickle.dump(infos, handle)
    with pytest.raises(ValueError, match=r"infos\['scene-0001'\]\[2\].*'ego2global_rotation'"):
        load_poses(broken)

    no_infos = tmp_path / "no_infos.pkl"
    with open(no_infos, "wb") as handle:
        pickle.dump({"data": []}, handle)
    with pytest.raises(ValueError, match="missing required key 'infos'"):
        load_poses(no_infos)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pkl"
    with open(evil, "wb") as handle:
        pickle.dump({"infos": Evil()}, handle)
    with pytest.raises(ValueError, match=r"refusing to load builtins.print"):
        load_poses(evil)

    with pytest.raises(ValueError, match=r"expected .json"):
        load_poses(tmp_path / "poses.txt")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_poses(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="no gts/ folder"):
        Occ3DDataset(tmp_path, clip_len=2)


def test_writer_round_trip_and_resume(tmp_path):
    rng = np.random.default_rng(3)
    semantics = rng.integers(0, 18, size=(4, 200, 200, 16), dtype=np.uint8)
    poses = np.array([[10.0, 0.0, 0.0], [11.0, 0.0, 0.0], [12.0, 0.5, 0.2], [13.0, 1.0, 0.3]])
    writer = Occ3DWriter(tmp_path / "out")
    writer.write_scene("proc-a", semantics, poses)
    # A new writer on the same folder resumes with what is on disk.
    resumed = Occ3DWriter(tmp_path / "out")
    assert resumed.scenes == ["proc-a"]
    resumed.write_scene("proc-b", semantics[:2], poses[:2], split="val")
    dataset = Occ3DDataset(tmp_path / "out", clip_len=2)
    assert len(dataset) == 3 + 1
    first = dataset[0]
    assert np.array_equal(first["occupancy"], semantics[:2])
    assert np.allclose(first["trajectory"][1], [1.0, 0.0, 0.0], atol=1e-6)
    assert len(Occ3DDataset(tmp_path / "out", clip_len=2, split="val")) == 1
    assert not list((tmp_path / "out").rglob("*.tmp"))
