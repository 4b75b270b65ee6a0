"""The command line starts fast and says what it takes: `import occsim` without torch,
`occsim --help` without the evaluation stack, `occsim train STAGE --help` with every key."""

import argparse
import subprocess
import sys

import pytest

from occsim.cli import EVAL_COMMANDS, build_parser, main
from occsim.train.cli import stage_help
from occsim.train.config import DiTTrainConfig, TokenizerTrainConfig
from occsim.train.config_help import config_keys, field_docs

HEAVY = ("torch", "diffusers")


def imported_modules(code: str) -> set[str]:
    """Top-level names of every module ``code`` imports, from ``-X importtime``."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_import_occsim_registers_envs_without_torch():
    modules = imported_modules(
        "import occsim, gymnasium as gym; assert 'occsim/OccSora-v0' in gym.registry"
    )
    assert "occsim" in modules and "gymnasium" in modules
    assert not set(HEAVY) & modules


def test_help_builds_without_torch():
    modules = imported_modules(
        "import contextlib, io, occsim.cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    occsim.cli.main(['--help'])"
    )
    assert not set(HEAVY) & modules


def test_lazy_package_attributes_resolve():
    import occsim.agents
    import occsim.envs

    assert occsim.envs.ProceduralEnv.__name__ == "ProceduralEnv"
    assert occsim.agents.KeyboardAgent.__module__ == "occsim.agents.keyboard"
    assert set(occsim.envs.__all__) <= set(dir(occsim.envs))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        occsim.envs.Nope  # noqa: B018


def subcommand_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {choice.dest: choice.help for choice in commands._choices_actions}


def test_eval_placeholders_match_the_real_commands():
    fast, full = subcommand_help(build_parser(False)), subcommand_help(build_parser(True))
    assert list(fast) == list(full)
    assert {name: full[name] for name in EVAL_COMMANDS} == EVAL_COMMANDS


def test_train_stage_help_lists_presets_and_every_key(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "dit", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "presets (preset=NAME):" in text and "tiny" in text
    for key, _, _, doc in config_keys(DiTTrainConfig):
        assert f"  {key} (" in text and doc
    # Defaults come from the config instance: the DiT's data section differs from DataConfig's.
    assert "data.clip_len (int, default 8)" in text
    assert "Frames per training clip" in stage_help("tokenizer")
    assert "data.clip_len (int, default 4)" in stage_help("tokenizer")
    assert len(config_keys(TokenizerTrainConfig)) > 30


def test_field_docs_read_attribute_docstrings_and_attributes_sections():
    from occsim.agents.base import ControlSpec

    assert field_docs(DiTTrainConfig)["ema_decay"].startswith("Decay of the exponential")
    docs = field_docs(ControlSpec)  # a Google-style "Attributes:" section
    assert docs["frames"] == "waypoints per action (the env's ``frames_per_step``)."
    assert docs["action_scale"].endswith("for waypoint ``(x, y)``.")


def test_gallery_writes_a_procedural_video(tmp_path, capsys):
    main(["gallery", "--out", str(tmp_path), "--steps", "3"])
    assert "wrote 3 frames" in capsys.readouterr().out
    assert (tmp_path / "gallery.gif").stat().st_size > 1000
