"""README.md works as written: every ```python block runs, and every ```bash command is run
(as written, or with smaller counts where the written one takes minutes), marked slow where
even that takes long, or says why it cannot run here. A command added to the README without
a check below fails ``test_every_readme_command_has_a_check``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent
WINDOW_SECONDS = 15  # a window command passes if it is still running after this long


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def readme_commands() -> list[str]:
    """Each bash command of the README: continuation lines joined, comments dropped."""
    commands = []
    for block in code_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            command = " ".join(line.split("#", 1)[0].split())
            if command:
                commands.append(command)
    return commands


@dataclass(frozen=True)
class Check:
    """How a README command is checked.

    Attributes:
        run: the command run instead of the written one (the same one, smaller); empty:
            as written.
        setup: commands run first in the same folder (e.g. the files the command reads).
        slow: takes more than ~30 s even so.
        window: an interactive window: it passes if still running after WINDOW_SECONDS.
        overrides: cannot run here (e.g. needs 8 GPUs): its ``key=value`` overrides are
            checked against the stage's config instead.
        skip: why it is not run at all.
    """

    run: str = ""
    setup: tuple[str, ...] = ()
    slow: bool = False
    window: bool = False
    overrides: bool = False
    skip: str = ""


OCC = ".venv/bin/occsim"
ONE_STEP = "optim.max_steps=1 optim.warmup_steps=1 data.num_val_clips=1"
TRAIN_DATA = (
    f"{OCC} data procedural --out data/procedural --clips 1 --clip-len 40 --seed 10000 --split val",
    f"{OCC} data procedural --out data/procedural --clips 2 --clip-len 40 --seed 0",
)
TOKENIZER = f"{OCC} train tokenizer --config assets/configs/tokenizer_default.yaml {ONE_STEP}"
DIT = f"{OCC} train dit --config assets/configs/dit_default.yaml {ONE_STEP} optim.batch_size=2"
FINETUNE = f"{OCC} train tokenizer --config assets/configs/tokenizer_decoder_finetune.yaml"
HEADLESS = f"{OCC} drive --headless --world procedural --steps 1 --out recorded"

CHECKS: dict[str, Check] = {
    # Its recipe, one step (slow: the maneuver:left command below runs the same code, and
    # test_make_demo_runs_the_command_the_readme_describes checks the recipe).
    "make demo": Check(run=f"{OCC} drive --headless --steps 1 --out outputs/drive", slow=True),
    "make test": Check(skip="the test suite itself"),
    f"{OCC} drive": Check(window=True),
    f"{OCC} drive --3d --record ep.json": Check(window=True, slow=True),
    f"{OCC} replay ep.json": Check(setup=(HEADLESS, "cp recorded/episode.json ep.json")),
    f"{OCC} drive --headless --agent maneuver:left --steps 8 --out outputs/left": Check(
        run=f"{OCC} drive --headless --agent maneuver:left --steps 1 --out outputs/left"
    ),
    f"{OCC} drive --world procedural": Check(window=True, slow=True),  # as `occsim drive`
    f"{OCC} drive --fast": Check(window=True, slow=True),
    f"{OCC} drive --solver-steps 4": Check(window=True, slow=True),
    f"{OCC} eval recon --clips 64": Check(run=f"{OCC} eval recon --clips 1", slow=True),
    f"{OCC} eval forecast --clips 32": Check(run=f"{OCC} eval forecast --clips 1", slow=True),
    f"{OCC} eval generate --clips 16": Check(
        run=f"{OCC} eval generate --clips 2 --steps-list 2 --strengths 1.0", slow=True
    ),
    f"{OCC} eval adherence --clips 4": Check(run=f"{OCC} eval adherence --clips 1", slow=True),
    f"{OCC} eval closed-loop --clips 4 --steps 5": Check(
        run=f"{OCC} eval closed-loop --clips 1 --steps 1", slow=True
    ),
    f"{OCC} eval sweep --clips 4 --steps 5": Check(
        run=f"{OCC} eval sweep --clips 1 --steps 1 --steps-list 1 --schedulers DDIMScheduler "
        "--guidances 1",
        slow=True,
    ),
    f"{OCC} eval road-users": Check(run=f"{OCC} eval road-users --clips 1 --steps 1", slow=True),
    f"{OCC} bench": Check(run=f"{OCC} bench --steps 2 --batch 2 --no-scaling", slow=True),
    f"{OCC} data procedural --out data/procedural --clips 200 --clip-len 16 --seed 0": Check(
        run=f"{OCC} data procedural --out data/procedural --clips 2 --clip-len 16 --seed 0"
    ),
    f"{OCC} --help": Check(),
    f"{OCC} train tokenizer --help": Check(),
    # Training, as the bundled model was made, one step each.
    f"{OCC} data procedural --out data/procedural --clips 12 --clip-len 40 --seed 10000 "
    "--split val": Check(run=TRAIN_DATA[0]),
    f"{OCC} data procedural --out data/procedural --clips 160 --clip-len 40 --seed 0": Check(
        run=TRAIN_DATA[1]
    ),
    f"{OCC} train tokenizer --config assets/configs/tokenizer_default.yaml": Check(
        run=TOKENIZER, setup=TRAIN_DATA, slow=True
    ),
    f"{OCC} train dit --config assets/configs/dit_default.yaml": Check(
        run=DIT, setup=(*TRAIN_DATA, TOKENIZER), slow=True
    ),
    ".venv/bin/python scripts/bundle_model.py runs/dit/pipeline": Check(
        run=".venv/bin/python scripts/bundle_model.py runs/dit/pipeline --out bundled",
        setup=(*TRAIN_DATA, TOKENIZER, DIT),
        slow=True,
    ),
    f"{FINETUNE}": Check(run=f"{FINETUNE} {ONE_STEP}", setup=(*TRAIN_DATA, TOKENIZER), slow=True),
    ".venv/bin/python scripts/bundle_model.py runs/dit/pipeline --tokenizer "
    "runs/tokenizer_ft/final": Check(
        run=".venv/bin/python scripts/bundle_model.py runs/dit/pipeline --tokenizer "
        "runs/tokenizer_ft/final --out bundled",
        setup=(*TRAIN_DATA, TOKENIZER, DIT, f"{FINETUNE} {ONE_STEP}"),
        slow=True,
    ),
    f"{OCC} data procedural --out data/procedural --clips 240 --clip-len 40 --seed 0 "
    "--workers 2": Check(run=f"{TRAIN_DATA[1]} --workers 2"),
    f"{OCC} train dit --config assets/configs/dit_memory.yaml": Check(
        run=f"{OCC} train dit --config assets/configs/dit_memory.yaml {ONE_STEP} "
        "optim.batch_size=2",
        setup=TRAIN_DATA,
        slow=True,
    ),
    f"{OCC} train tokenizer --config assets/configs/tokenizer_default.yaml --resume latest": Check(
        run=f"{TOKENIZER} --resume latest optim.max_steps=2",
        setup=(*TRAIN_DATA, TOKENIZER),
        slow=True,
    ),
    ".venv/bin/torchrun --nproc_per_node 2 -m occsim.train tokenizer preset=tiny": Check(
        run=".venv/bin/torchrun --nproc_per_node 2 -m occsim.train tokenizer preset=tiny "
        f"{ONE_STEP} data.num_clips=4",
        slow=True,
    ),
}
for command in readme_commands():
    if command.startswith("accelerate launch --multi_gpu"):  # 8 GPUs
        CHECKS.setdefault(command, Check(overrides=True))


# Folders where a sequence of setup commands has run, made once per session: the training
# commands share their first steps (data, then a tokenizer, then a DiT).
_PREPARED: dict[tuple[str, ...], Path] = {}


def prepared(setup: tuple[str, ...], factory: pytest.TempPathFactory) -> Path:
    """A folder where the README's relative paths (assets/, scripts/) resolve and the
    ``setup`` commands have run, in order (shared: copy it before use)."""
    if setup not in _PREPARED:
        folder = factory.mktemp("readme")
        if setup:
            shutil.copytree(
                prepared(setup[:-1], factory), folder, symlinks=True, dirs_exist_ok=True
            )
            result = shell(setup[-1], folder)
            assert result.returncode == 0, f"{setup[-1]}\n{result.stderr[-3000:]}"
        else:
            for name in ("assets", "scripts"):
                (folder / name).symlink_to(ROOT / name)
        _PREPARED[setup] = folder
    return _PREPARED[setup]


def shell(command: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    command = re.sub(r"(^|\s)\.venv/bin/", rf"\g<1>{BIN}/", command)
    env = {
        **os.environ,
        "SDL_VIDEODRIVER": "dummy",
        "OMP_NUM_THREADS": "2",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_every_readme_command_has_a_check():
    assert set(readme_commands()) == set(CHECKS)
    assert "make demo" in CHECKS and f"{OCC} --help" in CHECKS


def test_make_demo_runs_the_command_the_readme_describes():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "-m occsim drive --headless --steps 10 --out outputs/drive" in recipe
    assert "occsim drive --headless --steps 10 --out outputs/drive" in README


def command_params():
    for command, check in CHECKS.items():
        marks = [pytest.mark.slow] if check.slow else []
        if check.skip:
            marks.append(pytest.mark.skip(reason=check.skip))
        yield pytest.param(command, check, marks=marks, id=command.replace(".venv/bin/", ""))


@pytest.mark.parametrize("command, check", list(command_params()))
def test_readme_command(
    command: str, check: Check, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
):
    if check.overrides:
        from occsim.train.cli import CONFIGS
        from occsim.train.config import load_config

        words = command.split()
        stage = words[words.index("occsim.train") + 1]
        load_config(CONFIGS[stage], None, [w for w in words if "=" in w])  # raises if unknown
        return
    workdir = tmp_path / "work"
    shutil.copytree(prepared(check.setup, tmp_path_factory), workdir, symlinks=True)
    if check.window:
        with pytest.raises(subprocess.TimeoutExpired):  # still driving: it started fine
            result = shell(check.run or command, workdir, timeout=WINDOW_SECONDS)
            pytest.fail(f"the window ended early:\n{result.stdout}\n{result.stderr[-3000:]}")
        return
    result = shell(check.run or command, workdir)
    assert result.returncode == 0, result.stderr[-3000:]


def python_params():
    for index, block in enumerate(code_blocks("python")):
        slow = "gym.make_vec" in block  # eight envs and a planner: ~45 s on 2 cores
        yield pytest.param(block, marks=[pytest.mark.slow] if slow else [], id=f"python-{index}")


@pytest.mark.parametrize("block", list(python_params()))
def test_readme_python_block(block: str, tmp_path: Path):
    script = tmp_path / "block.py"
    script.write_text(block)
    result = shell(f"{shutil.which('python', path=str(BIN))} block.py", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
