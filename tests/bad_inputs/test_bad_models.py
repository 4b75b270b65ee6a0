"""Bad model folders and training configs: structurally wrong models never load (the file
named), and a training run refuses a bad config before any work or any file."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from bad_input_tally import FUZZ, FUZZ_SLOW, clear_error, expect_error
from hypothesis import given
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from occsim.dit import OccDiT
from occsim.model_files import CONFIG_RULES
from occsim.pipeline import OccSoraPipeline
from occsim.train import DiTTrainConfig, TokenizerTrainConfig, load_config
from occsim.train.config import RULES
from occsim.train.dit_stage import train_dit
from occsim.train.tokenizer_stage import train_tokenizer

MODEL = "pipeline folder (from_pretrained / load_world_model)"
TRAIN = "training config (file, key=value, stage start)"
WEIGHTS = "diffusion_pytorch_model.safetensors"


def edit_json(path: Path, change) -> None:
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value))


def edit_weights(path: Path, change) -> None:
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


def first(tensors: dict, ndim: int = 2) -> str:
    return sorted(k for k, v in tensors.items() if v.ndim == ndim)[0]


def widen(tensors: dict) -> None:
    key = first(tensors)
    tensors[key] = torch.zeros(tensors[key].shape[0] + 1, tensors[key].shape[1])


def config(part: str, **values):
    return part + "/config.json", lambda c: c.update(values)


FOLDER_CASES = {
    # weights
    "transformer weight missing": ("transformer/" + WEIGHTS, lambda t: t.pop(first(t))),
    "tokenizer weight missing": ("tokenizer/" + WEIGHTS, lambda t: t.pop(first(t, 1))),
    "unexpected weight": ("transformer/" + WEIGHTS, lambda t: t.update(bogus=torch.zeros(3))),
    "weight of the wrong shape": ("transformer/" + WEIGHTS, widen),
    "NaN weight": ("transformer/" + WEIGHTS, lambda t: t[first(t)].fill_(float("nan"))),
    "inf in the tokenizer": ("tokenizer/" + WEIGHTS, lambda t: t[first(t, 1)].fill_(float("inf"))),
    "integer weight": ("transformer/" + WEIGHTS, lambda t: t.update({first(t): t[first(t)].int()})),
    # model configs
    "hidden_size negative": config("transformer", hidden_size=-4),
    "hidden_size huge": config("transformer", hidden_size=10**9),
    "hidden_size a string": config("transformer", hidden_size="48"),
    "heads do not divide": config("transformer", num_heads=5),
    "latent_scale zero": config("transformer", latent_scale=0.0),
    "latent_scale NaN": config("transformer", latent_scale=float("nan")),
    "mlp_ratio inf": config("transformer", mlp_ratio=float("inf")),
    "learn_sigma a string": config("transformer", learn_sigma="yes"),
    "unknown DiT key": config("transformer", flash_attention=True),
    "wrong class name": config("transformer", _class_name="OccTokenizer"),
    "latent_channels mismatched": config("transformer", latent_channels=16),
    "window not the tokenizer's": config("transformer", latent_frames=1),
    "num_classes 20": config("tokenizer", num_classes=20),
    "grid of rank 2": config("tokenizer", grid_size=[200, 200]),
    "dropout 1.5": config("tokenizer", dropout=1.5),
    "codebook groups do not divide": config("tokenizer", codebook_groups=3),
    "downsample not triples": config("tokenizer", downsample=[[4, 1]]),
    # the index: nothing but occsim parts and diffusers schedulers
    "tokenizer from another module": (
        "model_index.json",
        lambda c: c.update(tokenizer=["os", "OccTokenizer"]),
    ),
    "tokenizer of another class": (
        "model_index.json",
        lambda c: c.update(tokenizer=["occsim.dit", "OccDiT"]),
    ),
    "scheduler from another module": (
        "model_index.json",
        lambda c: c.update(scheduler=["os", "system"]),
    ),
    "scheduler not a scheduler": (
        "model_index.json",
        lambda c: c.update(scheduler=["diffusers", "DiffusionPipeline"]),
    ),
    "another pipeline": (
        "model_index.json",
        lambda c: c.update(_class_name="StableDiffusionPipeline"),
    ),
    # the scheduler
    "no train timesteps": config("scheduler", num_train_timesteps=0),
    "negative beta": config("scheduler", beta_start=-1.0),
    "beta above 1": config("scheduler", beta_end=2.0),
    "betas reversed": config("scheduler", beta_start=0.1, beta_end=0.01),
    "unknown prediction type": config("scheduler", prediction_type="noise"),
    "unknown variance type": config("scheduler", variance_type="weird"),
    "trained betas too few": config("scheduler", trained_betas=[0.1, 0.2]),
    "unknown spacing": config("scheduler", timestep_spacing="random"),
    "negative offset": config("scheduler", steps_offset=-1),
}
FILE_CASES = {
    "weights truncated": ("transformer/" + WEIGHTS, lambda b: b[: len(b) // 2]),
    "weights random bytes": ("tokenizer/" + WEIGHTS, lambda b: bytes(range(256)) * 8),
    "weights header flipped": ("transformer/" + WEIGHTS, lambda b: b[:20] + b"\xff" + b[21:]),
    "config not JSON": ("transformer/config.json", lambda b: b"{hidden"),
    "config a list": ("tokenizer/config.json", lambda b: b"[1, 2]"),
    "index not JSON": ("model_index.json", lambda b: b"\x00\x01"),
}


@pytest.fixture
def folder(tiny_pipeline_path, tmp_path) -> Path:
    copy = tmp_path / "pipe"
    shutil.copytree(tiny_pipeline_path, copy)
    return copy


def scheduler_config(path: str) -> str:
    return path.replace("scheduler/config.json", "scheduler/scheduler_config.json")


@pytest.mark.parametrize("kind", sorted(FOLDER_CASES))
def test_bad_folders_never_load(folder, kind):
    relative, change = FOLDER_CASES[kind]
    path = folder / scheduler_config(relative)
    (edit_weights if path.suffix == ".safetensors" else edit_json)(path, change)
    expect_error(MODEL, kind, lambda: OccSoraPipeline.from_pretrained(folder), match=str(folder))


@pytest.mark.parametrize("kind", sorted(FILE_CASES))
def test_unreadable_files(folder, kind):
    relative, change = FILE_CASES[kind]
    path = folder / relative
    path.write_bytes(change(path.read_bytes()))
    expect_error(MODEL, kind, lambda: OccSoraPipeline.from_pretrained(folder), match=relative)


def test_pickled_weights_are_never_read(folder):
    (folder / "transformer" / WEIGHTS).unlink()
    torch.save({}, folder / "transformer" / "diffusion_pytorch_model.bin")
    expect_error(
        MODEL,
        "pickle instead of safetensors",
        lambda: OccSoraPipeline.from_pretrained(folder),
        (FileNotFoundError,),
        "safetensors",
    )


BAD_VALUES = st.sampled_from([None, "x", {}, [[]], float("nan"), float("inf"), -(10**12)])


@FUZZ_SLOW
@given(key=st.sampled_from(sorted(CONFIG_RULES[OccDiT])), value=BAD_VALUES)
def test_fuzzed_dit_configs(tiny_pipeline_path, key, value):
    if key == "latent_shift" and value == -(10**12):
        value = None  # any finite shift is a valid config
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pipe"
        shutil.copytree(tiny_pipeline_path, folder)
        edit_json(folder / "transformer" / "config.json", lambda c: c.update({key: value}))
        expect_error(
            MODEL,
            "fuzzed DiT config value",
            lambda: OccSoraPipeline.from_pretrained(folder),
            match="config.json",
        )


# ---------------------------------------------------------------- training configs

BAD_TRAIN = {
    "optim.max_steps": ["-5", "0", "true", "1.5", "many"],
    "optim.learning_rate": ["0", "-1e-3", ".nan", ".inf", "100"],
    "optim.weight_decay": ["-1", ".nan"],
    "optim.warmup_steps": ["-1"],
    "optim.grad_clip": ["-1", ".inf"],
    "optim.batch_size": ["0", "-2"],
    "optim.gradient_accumulation": ["0"],
    "run.checkpoint_every": ["0", "-1"],
    "run.validate_every": ["0"],
    "run.log_every": ["0"],
    "run.image_every": ["-1"],
    "run.keep_checkpoints": ["0"],
    "run.seed": ["-1", "99999999999999"],
    "run.mixed_precision": ["fp8"],
    "run.output_dir": ["''"],
    "data.clip_len": ["0", "-4"],
    "data.num_clips": ["0"],
    "data.num_val_clips": ["0"],
    "data.seed": ["-3"],
    "data.num_workers": ["-2"],
    "data.source": ["nuscenes"],
    "patch_fraction": ["0", "1.5", ".nan"],
    "lovasz_weight": ["-1"],
    "class_weighting": ["rare"],
    "class_weight_clips": ["0"],
    "preset": ["huge"],
    "freeze_encoder": ["maybe"],
}
TRAIN_CASES = [(k, v) for k, values in BAD_TRAIN.items() for v in values]


@pytest.mark.parametrize("key, value", TRAIN_CASES, ids=[f"{k}={v}" for k, v in TRAIN_CASES])
def test_bad_training_keys_fail_on_load(key, value):
    expect_error(
        TRAIN,
        key,
        lambda: load_config(TokenizerTrainConfig, overrides=[f"{key}={value}"]),
        (ValueError,),
        key.split(".")[-1],
    )


DIT_TRAIN = {
    "trajectory_dropout": "1.5",
    "ema_decay": "1",
    "prediction_type": "noise",
    "max_context_frames": "-1",
    "segment_len": "0",
    "vlb_from_step": "-1",
    "tokenizer": "''",
}


@pytest.mark.parametrize("key", sorted(DIT_TRAIN))
def test_bad_dit_keys_fail_on_load(key):
    override = f"{key}={DIT_TRAIN[key]}"
    expect_error(
        TRAIN,
        f"DiT {key}",
        lambda: load_config(DiTTrainConfig, overrides=[override]),
        (ValueError,),
        key,
    )


def test_every_training_key_has_a_rule():
    for section, rules in RULES.items():
        keys = {
            f.name for f in dataclasses.fields(section) if f.name not in ("data", "optim", "run")
        }
        assert keys == set(rules), section.__name__


@FUZZ
@given(
    key=st.sampled_from(
        [
            "optim.max_steps",
            "run.checkpoint_every",
            "run.validate_every",
            "run.log_every",
            "optim.batch_size",
            "data.clip_len",
        ]
    ),
    value=st.integers(max_value=0),
)
def test_fuzzed_counts(key, value):
    expect_error(
        TRAIN,
        "fuzzed count <= 0",
        lambda: load_config(TokenizerTrainConfig, overrides=[f"{key}={value}"]),
        (ValueError,),
        key,
    )


def test_a_config_file_with_bad_values(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  max_steps: -5\n")
    expect_error(TRAIN, "YAML file: max_steps", lambda: load_config(TokenizerTrainConfig, path))
    path.write_text("run: [1, 2]\n")
    expect_error(
        TRAIN, "YAML file: section a list", lambda: load_config(TokenizerTrainConfig, path)
    )


@pytest.mark.parametrize(
    "stage, change",
    [
        ("tokenizer", lambda c: setattr(c.optim, "max_steps", -5)),
        ("tokenizer", lambda c: setattr(c.run, "checkpoint_every", 0)),
        ("tokenizer", lambda c: c.model_overrides.update(codebook_size=-1)),
        ("tokenizer", lambda c: c.model_overrides.update(warp_speed=9)),
        ("dit", lambda c: setattr(c.run, "validate_every", 0)),
        ("dit", lambda c: setattr(c.run, "log_every", 0)),
        ("dit", lambda c: c.model_overrides.update(hidden_size=float("nan"))),
    ],
)
def test_stages_refuse_before_any_work(tmp_path, stage, change):
    """Configs built in code skip load_config: the stage checks again before it starts."""
    config = TokenizerTrainConfig() if stage == "tokenizer" else DiTTrainConfig()
    config.run.output_dir = str(tmp_path / "run")
    change(config)
    train = train_tokenizer if stage == "tokenizer" else train_dit
    expect_error(TRAIN, f"{stage} stage start", lambda: train(config), (ValueError,))
    assert not (tmp_path / "run").exists()


def test_a_corrupt_latent_cache_is_rebuilt_not_trusted(occ3d_root, tiny_pipeline_path, tmp_path):
    from occsim.data import Occ3DDataset
    from occsim.model_files import load_model
    from occsim.tokenizer import OccTokenizer
    from occsim.train.latent_cache import load_or_build_cache

    tokenizer = load_model(OccTokenizer, tiny_pipeline_path / "tokenizer")
    segments = Occ3DDataset(occ3d_root["root"], clip_len=4, stride=4, scenes=["scene-0001"])
    path = tmp_path / "latents.safetensors"
    good = load_or_build_cache(path, tokenizer, segments, "data")
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    corruptions = {
        "codes outside the codebook": lambda: save_file(
            {
                "indices": (good.indices + 10_000).contiguous(),
                "trajectory": good.trajectory.contiguous(),
            },
            str(path),
            metadata,
        ),
        "NaN poses": lambda: save_file(
            {
                "indices": good.indices.contiguous(),
                "trajectory": (good.trajectory * float("nan")).contiguous(),
            },
            str(path),
            metadata,
        ),
        "random bytes": lambda: path.write_bytes(bytes(range(256)) * 4),
    }
    for kind, corrupt in corruptions.items():
        corrupt()
        rebuilt = load_or_build_cache(path, tokenizer, segments, "data")
        assert torch.equal(rebuilt.indices, good.indices), kind
        assert torch.equal(rebuilt.trajectory, good.trajectory), kind
        clear_error("DiT latent cache (rebuilt, with a message)", kind)
