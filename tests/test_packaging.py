import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_namespaced_subpackages_import():
    import occsim.agents
    import occsim.assets
    import occsim.envs

    for module in (occsim.envs, occsim.agents, occsim.assets):
        assert Path(module.__file__).parent.name in {"envs", "agents", "assets"}


def test_wheel_has_one_top_level_package(tmp_path):
    pytest.importorskip("build", reason="the `build` package (dev extra) is needed to build")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("occsim-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    top_level = {name for name in top_level if not name.endswith(".dist-info")}
    assert top_level == {"occsim"}
    for sub in ("envs", "agents", "assets"):
        assert f"occsim/{sub}/__init__.py" in names
    # Every asset ships: configs, the bundled model, the FD encoder.
    assets = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "assets").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert len(assets) > 10
    assert [name for name in assets if f"occsim/{name}" not in names] == []
    # Installed from the wheel (not from the source tree), the namespaced packages import.
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    probe = "import occsim.envs, occsim.agents, occsim.assets; print(occsim.envs.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip().startswith(str(target))
