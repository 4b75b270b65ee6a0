"""Bundled package data (default configs, the pretrained default model), as ``occsim.assets``."""

from pathlib import Path

ASSETS_DIR: Path = Path(__file__).resolve().parent


def asset_path(*parts: str) -> Path:
    """Path of a bundled asset; raises ``FileNotFoundError`` naming it if it is not shipped."""
    path = ASSETS_DIR.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"bundled asset {'/'.join(parts)} is not in {ASSETS_DIR}")
    return path
