"""Bad Occ3D files and scenes: every corruption a ValueError naming the file, paths that
stay inside their root, and a writer that never touches what it wrote before."""

from __future__ import annotations

import json
import pickle
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from bad_input_tally import (
    FUZZ,
    clear_error,
    dead_pid,
    expect_error,
    harmless,
    snapshot,
    state_of,
)
from hypothesis import given
from hypothesis import strategies as st

from occsim.data import Occ3DDataset, Occ3DWriter, load_labels, load_poses
from occsim.data.occ3d_writer import yaw_to_quaternion
from occsim.io import remove_stale_temporaries

SHAPE = (8, 8, 4)  # small volumes keep the fuzzing fast; the checks do not depend on size
LABELS = "Occ3D labels.npz"
POSES = "Occ3D annotations.json / infos.pkl"
WRITER = "Occ3DWriter.write_scene"


def good_volume(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 18, SHAPE, dtype=np.uint8)


@pytest.fixture(scope="module")
def good_labels(tmp_path_factory) -> tuple[bytes, dict]:
    path = tmp_path_factory.mktemp("labels") / "labels.npz"
    semantics = good_volume()
    np.savez_compressed(
        path, semantics=semantics, mask_lidar=np.ones(SHAPE, np.uint8), mask_camera=semantics < 9
    )
    return path.read_bytes(), load_labels(path, SHAPE)


def npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


HAND_WRITTEN_LABELS = {
    "empty file": lambda p: p.write_bytes(b""),
    "random bytes": lambda p: p.write_bytes(bytes(range(256)) * 4),
    "a bare .npy": lambda p: (
        np.save(p.with_suffix(".tmp.npy"), good_volume())
        or p.write_bytes(p.with_suffix(".tmp.npy").read_bytes())
    ),
    "a pickle": lambda p: p.write_bytes(pickle.dumps({"semantics": good_volume()})),
    "pickled object array": lambda p: npz(p, semantics=np.array([object()] * 4)),
    "float semantics": lambda p: npz(p, semantics=good_volume().astype(np.float32)),
    "bool semantics": lambda p: npz(p, semantics=good_volume() > 3),
    "class id 18": lambda p: npz(p, semantics=np.full(SHAPE, 18, np.uint8)),
    "negative ids": lambda p: npz(p, semantics=np.full(SHAPE, -1, np.int16)),
    "wrong shape": lambda p: npz(p, semantics=np.zeros((8, 8, 5), np.uint8)),
    "wrong rank": lambda p: npz(p, semantics=np.zeros((8, 8), np.uint8)),
    "no semantics": lambda p: npz(p, labels=good_volume()),
    "mask value 2": lambda p: npz(p, semantics=good_volume(), mask_camera=np.full(SHAPE, 2)),
    "mask of floats": lambda p: npz(p, semantics=good_volume(), mask_lidar=np.ones(SHAPE)),
    "mask wrong shape": lambda p: npz(p, semantics=good_volume(), mask_camera=np.ones((8, 8))),
    "zip of text": lambda p: zipfile.ZipFile(p, "w").writestr("semantics.npy", "not numpy"),
}


@pytest.mark.parametrize("kind", sorted(HAND_WRITTEN_LABELS))
def test_corrupt_labels_name_the_file(tmp_path, kind):
    path = tmp_path / "labels.npz"
    HAND_WRITTEN_LABELS[kind](path)
    error = expect_error(LABELS, kind, lambda: load_labels(path, SHAPE), (ValueError,))
    assert str(path) in str(error) and "allow_pickle" not in str(error)


@FUZZ
@given(position=st.integers(0, 10**6), bit=st.integers(0, 7))
def test_bit_flips_are_errors_or_change_nothing(tmp_path, good_labels, position, bit):
    data, expected = good_labels
    flipped = bytearray(data)
    flipped[position % len(data)] ^= 1 << bit
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(flipped))
    try:
        got = load_labels(path, SHAPE)
    except ValueError as error:
        assert str(path) in str(error) and "allow_pickle" not in str(error)
        clear_error(LABELS, "bit flip")
        return
    assert got.keys() == expected.keys()  # a flip in zip metadata only: the same data
    assert all(np.array_equal(got[k], expected[k]) for k in expected)
    harmless(LABELS, "bit flip")


@FUZZ
@given(cut=st.integers(0, 10**6))
def test_truncated_labels(tmp_path, good_labels, cut):
    data = good_labels[0]
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: cut % len(data)])
    expect_error(LABELS, "truncated", lambda: load_labels(path, SHAPE), (ValueError,), "cut.npz")


@FUZZ
@given(data=st.binary(min_size=0, max_size=2000))
def test_random_bytes(tmp_path, data):
    path = tmp_path / "noise.npz"
    path.write_bytes(data)
    error = expect_error(LABELS, "random bytes", lambda: load_labels(path, SHAPE), (ValueError,))
    assert "noise.npz" in str(error) and "allow_pickle" not in str(error)


# ---------------------------------------------------------------- annotations.json


def annotations(frames: int = 3) -> dict:
    tokens = [f"scene-0001-{t}" for t in range(frames)]
    infos = {
        token: {
            "timestamp": 1000 + 500_000 * t,
            "ego_pose": {"translation": [1.0 * t, 0.0, 0.0], "rotation": [1.0, 0.0, 0.0, 0.0]},
            "gt_path": f"gts/scene-0001/{token}/labels.npz",
            "prev": tokens[t - 1] if t else "",
            "next": tokens[t + 1] if t + 1 < frames else "",
        }
        for t, token in enumerate(tokens)
    }
    return {"train_split": ["scene-0001"], "scene_infos": {"scene-0001": infos}}


def frame(data: dict, t: int = 1) -> dict:
    return data["scene_infos"]["scene-0001"][f"scene-0001-{t}"]


def mutate(change):
    def build(data: dict) -> dict:
        change(data)
        return data

    return build


def rename_scene(data: dict, name: object) -> None:
    data["scene_infos"] = {name: data["scene_infos"]["scene-0001"]}


def rename_token(data: dict, name: object) -> None:
    infos = data["scene_infos"]["scene-0001"]
    infos[name] = infos.pop("scene-0001-1")


HAND_WRITTEN_POSES = {
    "scene name climbs out": mutate(lambda d: rename_scene(d, "../../escaped")),
    "scene name absolute": mutate(lambda d: rename_scene(d, "/etc")),
    "scene name hidden": mutate(lambda d: rename_scene(d, ".hidden")),
    "token with a slash": mutate(lambda d: rename_token(d, "a/../../b")),
    "gt_path climbs out": mutate(lambda d: frame(d).update(gt_path="../../etc/passwd")),
    "gt_path absolute": mutate(lambda d: frame(d).update(gt_path="/etc/passwd")),
    "gt_path not a string": mutate(lambda d: frame(d).update(gt_path=["gts"])),
    "translation inf": mutate(lambda d: frame(d)["ego_pose"].update(translation=[1e999, 0, 0])),
    "translation NaN": mutate(lambda d: frame(d)["ego_pose"].update(translation=[0, 0, 1e999 * 0])),
    "translation strings": mutate(lambda d: frame(d)["ego_pose"].update(translation=["1", 0, 0])),
    "translation a dict": mutate(lambda d: frame(d)["ego_pose"].update(translation={"x": 1})),
    "translation 2 numbers": mutate(lambda d: frame(d)["ego_pose"].update(translation=[0, 0])),
    "rotation of zeros": mutate(lambda d: frame(d)["ego_pose"].update(rotation=[0, 0, 0, 0])),
    "rotation not unit": mutate(lambda d: frame(d)["ego_pose"].update(rotation=[2, 0, 0, 0])),
    "rotation bools": mutate(lambda d: frame(d)["ego_pose"].update(rotation=[True, 0, 0, 0])),
    "ego_pose missing": mutate(lambda d: frame(d).pop("ego_pose")),
    "ego_pose a list": mutate(lambda d: frame(d).update(ego_pose=[1, 2])),
    "timestamp a string": mutate(lambda d: frame(d).update(timestamp="soon")),
    "timestamp a bool": mutate(lambda d: frame(d).update(timestamp=True)),
    "timestamps repeat": mutate(lambda d: frame(d).update(timestamp=frame(d, 0)["timestamp"])),
    "prev a list": mutate(
        lambda d: [frame(d, t).pop("timestamp") for t in range(3)] and frame(d).update(prev=["x"])
    ),
    "prev/next cycle": mutate(
        lambda d: (
            [frame(d, t).pop("timestamp") for t in range(3)]
            and frame(d, 0).update(prev="scene-0001-2")
        )
    ),
    "scene_infos a list": mutate(lambda d: d.update(scene_infos=[1, 2])),
    "scene empty": mutate(lambda d: d.update(scene_infos={"scene-0001": {}})),
    "no scene_infos": mutate(lambda d: d.pop("scene_infos")),
    "split not a list": mutate(lambda d: d.update(train_split="scene-0001")),
    "split of numbers": mutate(lambda d: d.update(train_split=[1, 2])),
    "top level a list": lambda d: [d],
}


@pytest.mark.parametrize("kind", sorted(HAND_WRITTEN_POSES))
def test_bad_annotations_name_the_file(tmp_path, kind):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(HAND_WRITTEN_POSES[kind](annotations())))
    expect_error(POSES, kind, lambda: load_poses(path), (ValueError,), "annotations.json")


RAW_FILES = {
    "not JSON": b"{scene_infos: [",
    "not UTF-8": b"\xff\xfe\x00garbage",
    "nested 100000 deep": b"[" * 100_000 + b"]" * 100_000,
    "empty": b"",
}


@pytest.mark.parametrize("kind", sorted(RAW_FILES))
def test_unreadable_annotations(tmp_path, kind):
    path = tmp_path / "annotations.json"
    path.write_bytes(RAW_FILES[kind])
    expect_error(POSES, kind, lambda: load_poses(path), (ValueError,), "annotations.json")


BAD_VALUES = {
    "translation": st.one_of(
        st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=3, max_size=3).filter(
            lambda v: not all(np.isfinite(v))
        ),
        st.lists(st.integers(), max_size=2),
        st.text(),
        st.none(),
    ),
    "rotation": st.one_of(
        st.lists(st.floats(-0.5, 0.5), min_size=4, max_size=4),  # never a unit quaternion
        st.lists(st.text(), min_size=4, max_size=4),
        st.booleans(),
    ),
    "timestamp": st.one_of(st.text(), st.floats(), st.booleans(), st.lists(st.integers())),
    "gt_path": st.one_of(
        st.sampled_from(["..", "../x", "/x", "gts//x", "gts/./x", "gts/.hidden", "a\\..\\b"]),
        st.builds(lambda s: "../" + s, st.text(min_size=1)),
        st.integers(),
    ),
}


@FUZZ
@given(key=st.sampled_from(sorted(BAD_VALUES)), data=st.data())
def test_fuzzed_pose_fields(tmp_path, key, data):
    value = data.draw(BAD_VALUES[key])
    content = annotations()
    target = frame(content)["ego_pose"] if key in ("translation", "rotation") else frame(content)
    target[key] = value
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(content))
    expect_error(POSES, f"fuzzed {key}", lambda: load_poses(path), (ValueError,), "annotations")


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


PICKLES = {
    "code in the pickle": lambda: pickle.dumps({"infos": Evil()}),
    "truncated pickle": lambda: pickle.dumps({"infos": {"s": []}})[:-3],
    "scene name climbs out": lambda: pickle.dumps(
        {
            "infos": {
                "../x": [
                    {
                        "token": "t",
                        "ego2global_translation": [0, 0, 0],
                        "ego2global_rotation": [1, 0, 0, 0],
                    }
                ]
            }
        }
    ),
    "token climbs out": lambda: pickle.dumps(
        {
            "infos": {
                "s": [
                    {
                        "token": "../../t",
                        "ego2global_translation": [0, 0, 0],
                        "ego2global_rotation": [1, 0, 0, 0],
                    }
                ]
            }
        }
    ),
    "token an int": lambda: pickle.dumps(
        {
            "infos": {
                "s": [
                    {
                        "token": 7,
                        "ego2global_translation": [0, 0, 0],
                        "ego2global_rotation": [1, 0, 0, 0],
                    }
                ]
            }
        }
    ),
    "infos a list": lambda: pickle.dumps({"infos": [1]}),
    "top level a list": lambda: pickle.dumps([1, 2]),
}


@pytest.mark.parametrize("kind", sorted(PICKLES))
def test_bad_infos_pickles(tmp_path, kind, capfd):
    path = tmp_path / "infos.pkl"
    path.write_bytes(PICKLES[kind]())
    expect_error(POSES, f"infos: {kind}", lambda: load_poses(path), (ValueError,), "infos.pkl")
    assert "pwned" not in capfd.readouterr().out


@FUZZ
@given(data=st.binary(max_size=500))
def test_random_pickles(tmp_path, data):
    path = tmp_path / "infos.pkl"
    path.write_bytes(data)
    expect_error(POSES, "infos: random bytes", lambda: load_poses(path), (ValueError,), "infos")


def test_dataset_never_reads_outside_its_root(occ3d_root, tmp_path):
    root = occ3d_root["root"]
    content = json.loads((root / "annotations.json").read_text())
    first = next(iter(content["scene_infos"]["scene-0001"].values()))
    first["gt_path"] = "../../outside/labels.npz"
    path = tmp_path / "escape.json"
    path.write_text(json.dumps(content))
    expect_error(
        "Occ3DDataset", "gt_path out of root", lambda: Occ3DDataset(root, poses=path, clip_len=2)
    )


# ---------------------------------------------------------------- the writer


def poses(frames: int) -> np.ndarray:
    return np.stack([np.arange(frames, dtype=float), np.zeros(frames), np.zeros(frames)], 1)


@pytest.fixture
def written(tmp_path) -> Occ3DWriter:
    writer = Occ3DWriter(tmp_path / "out")
    writer.write_scene("proc-a", np.stack([good_volume(1), good_volume(2)]), poses(2))
    return writer


def volumes(frames: int = 2) -> np.ndarray:
    return np.stack([good_volume(i) for i in range(frames)])


BAD_SCENES = {
    "inf in the poses": dict(poses_xy_yaw=np.array([[0, 0, 0], [np.inf, 0, 0]])),
    "NaN yaw": dict(poses_xy_yaw=np.array([[0, 0, 0], [1, 0, np.nan]])),
    "poses wrong shape": dict(poses_xy_yaw=np.zeros((2, 2))),
    "poses too few": dict(poses_xy_yaw=np.zeros((1, 3))),
    "complex poses": dict(poses_xy_yaw=np.zeros((2, 3), complex)),
    "poses of strings": dict(poses_xy_yaw=np.full((2, 3), "1")),
    "scene climbs out": dict(scene="../../escaped"),
    "scene absolute": dict(scene="/tmp/escaped"),
    "scene with a slash": dict(scene="a/b"),
    "scene hidden": dict(scene=".x"),
    "scene empty": dict(scene=""),
    "scene not a string": dict(scene=7),
    "scene already written": dict(scene="proc-a"),
    "split climbs out": dict(split="../x"),
    "split not a string": dict(split=None),
    "float semantics": dict(semantics=volumes().astype(float)),
    "class id 18": dict(semantics=np.full((2, *SHAPE), 18, np.uint8)),
    "semantics rank 3": dict(semantics=good_volume()),
    "no frames": dict(semantics=np.zeros((0, *SHAPE), np.uint8), poses_xy_yaw=np.zeros((0, 3))),
    "mask wrong shape": dict(mask_camera=np.ones((2, 8, 8), bool)),
    "mask value 2": dict(mask_camera=np.full((2, *SHAPE), 2)),
    "mask of floats": dict(mask_camera=np.ones((2, *SHAPE))),
    "negative timestamp": dict(timestamp_start=-1),
    "timestamp overflow": dict(timestamp_start=2**63),
    "timestamp a float": dict(timestamp_start=0.5),
}


def write(writer: Occ3DWriter, **changes) -> None:
    arguments = dict(scene="proc-b", semantics=volumes(), poses_xy_yaw=poses(2))
    writer.write_scene(**{**arguments, **changes})


@pytest.mark.parametrize("kind", sorted(BAD_SCENES))
def test_a_bad_scene_changes_nothing(written, kind):
    before, state = snapshot(written.root.parent), state_of(written)
    expect_error(WRITER, kind, lambda: write(written, **BAD_SCENES[kind]))
    assert snapshot(written.root.parent) == before, "a bad scene touched the folder"
    assert state_of(written) == state, "a bad scene changed the writer"
    write(written)  # the export goes on
    assert Occ3DWriter(written.root).scenes == ["proc-a", "proc-b"]


@FUZZ
@given(
    row=st.integers(0, 1),
    column=st.integers(0, 2),
    value=st.sampled_from([np.inf, -np.inf, np.nan, 1e309]),
)
def test_non_finite_poses_never_reach_the_file(row, column, value):
    with tempfile.TemporaryDirectory() as folder:
        check_non_finite_pose(Path(folder), row, column, value)


def check_non_finite_pose(tmp_path: Path, row: int, column: int, value: float) -> None:
    writer = Occ3DWriter(tmp_path / "out")
    write(writer, scene="proc-a")
    before = snapshot(tmp_path)
    bad = poses(2)
    bad[row, column] = value
    expect_error(WRITER, "fuzzed non-finite pose", lambda: write(writer, poses_xy_yaw=bad))
    assert snapshot(tmp_path) == before
    assert Occ3DWriter(tmp_path / "out").scenes == ["proc-a"]  # still resumable


def test_a_corrupt_annotations_file_is_named_and_kept(written):
    written.annotations_path.write_text('{"scene_infos": {"proc-a": {"t": {"ego_pose": 1}}}}')
    before = snapshot(written.root)
    expect_error(
        WRITER,
        "corrupt annotations.json on resume",
        lambda: Occ3DWriter(written.root),
        (ValueError,),
        "annotations.json",
    )
    assert snapshot(written.root) == before


def test_interrupted_writes_are_cleaned_up(written):
    import os

    scene = written.root / "gts" / "proc-half" / "proc-half-0000"
    scene.mkdir(parents=True)
    stale = scene / f".labels.npz.{dead_pid()}-abc.tmp"
    stale.write_bytes(b"half")
    stale_json = written.root / f".annotations.json.{dead_pid()}-x.tmp"
    stale_json.write_text("{")
    ours = written.root / f".annotations.json.{os.getpid()}-y.tmp"  # a live writer's
    ours.write_text("{")
    Occ3DWriter(written.root)
    assert not stale.exists() and not stale_json.exists() and ours.exists()
    ours.unlink()


def test_a_folder_moved_aside_is_restored(tmp_path):
    """A crash between moving the old folder aside and renaming the new one in."""
    old = tmp_path / f".step-1.{dead_pid()}-q.old"
    old.mkdir()
    (old / "weights").write_text("kept")
    remove_stale_temporaries(tmp_path)
    assert (tmp_path / "step-1" / "weights").read_text() == "kept"


def test_yaw_quaternions_are_unit():
    assert np.isclose(np.linalg.norm(yaw_to_quaternion(1.3)), 1.0)
