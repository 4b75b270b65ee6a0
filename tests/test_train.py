import pytest
import torch

from occsim.tokenizer import OccTokenizer
from occsim.train import TokenizerTrainConfig, load_config
from occsim.train.checkpoint import list_checkpoints
from occsim.train.tokenizer_stage import train_tokenizer


def tiny_config(root, out, *extra) -> TokenizerTrainConfig:
    return load_config(
        TokenizerTrainConfig,
        overrides=[
            "preset=tiny",
            "data.source=occ3d",
            f"data.root={root}",
            "data.clip_len=2",
            "optim.max_steps=4",
            "optim.warmup_steps=1",
            "optim.batch_size=1",
            "run.checkpoint_every=2",
            "run.validate_every=100",
            "run.log_every=1",
            f"run.output_dir={out}",
            *extra,
        ],
    )


def weights(folder) -> dict:
    return OccTokenizer.from_pretrained(folder).state_dict()


@pytest.fixture
def one_thread():
    """On two threads, identical tokenizer training runs differ in about 1 of 5 (last-bit
    gradient differences, first seen in the convolution weights, that Adam amplifies); on
    one thread they agree, so a mismatch can only come from what resuming restores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_resume_continues_exactly(occ3d_root, tmp_path, one_thread):
    root = occ3d_root["root"]
    straight = train_tokenizer(tiny_config(root, tmp_path / "a"))
    config = tiny_config(root, tmp_path / "b")
    train_tokenizer(config)
    # Forget everything after step 2, as if the run had been killed there.
    for checkpoint in list_checkpoints(tmp_path / "b"):
        if checkpoint.name.endswith("4"):
            import shutil

            shutil.rmtree(checkpoint)
    assert [c.name for c in list_checkpoints(tmp_path / "b")] == ["step-00000002"]
    resumed = train_tokenizer(config, resume="latest")
    expected, got = weights(straight), weights(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    loaded = OccTokenizer.from_pretrained(resumed)
    assert loaded.config.codebook_size == 64


def test_bad_configs_and_checkpoints(occ3d_root, tmp_path):
    with pytest.raises(ValueError, match="unknown config key 'optim.lr'"):
        load_config(TokenizerTrainConfig, overrides=["optim.lr=1"])
    with pytest.raises(ValueError, match="expects int"):
        load_config(TokenizerTrainConfig, overrides=["optim.max_steps=many"])
    config_file = tmp_path / "bad.yaml"
    config_file.write_text("preset: tiny\nflavour: vanilla\n")
    with pytest.raises(ValueError, match="unknown config key 'flavour'"):
        load_config(TokenizerTrainConfig, config_file)
    with pytest.raises(FileNotFoundError, match="no gts/ folder"):
        train_tokenizer(tiny_config(tmp_path / "nowhere", tmp_path / "c"))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_tokenizer(tiny_config(occ3d_root["root"], tmp_path / "d"), resume="latest")

    config = tiny_config(occ3d_root["root"], tmp_path / "e", "optim.max_steps=2")
    train_tokenizer(config)
    (checkpoint,) = list_checkpoints(tmp_path / "e")
    state = checkpoint / "training_state.safetensors"
    state.write_bytes(state.read_bytes()[:100])
    before = (checkpoint / "tokenizer" / "diffusion_pytorch_model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="corrupt"):
        train_tokenizer(config, resume="latest")
    after = (checkpoint / "tokenizer" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert before == after  # nothing overwritten


def test_two_process_cpu_ddp_produces_a_loadable_checkpoint(occ3d_root, tmp_path):
    import os
    import subprocess
    import sys

    from occsim.train.checkpoint import load_state

    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "occsim.train",
        "tokenizer",
        "preset=tiny",
        "data.source=occ3d",
        f"data.root={occ3d_root['root']}",
        "data.clip_len=2",
        "optim.max_steps=2",
        "optim.batch_size=1",
        "run.checkpoint_every=2",
        "run.validate_every=100",
        f"run.output_dir={out}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (checkpoint,) = list_checkpoints(out)
    assert load_state(checkpoint)["world_size"] == 2
    assert OccTokenizer.from_pretrained(checkpoint / "tokenizer").config.codebook_size == 64
    assert OccTokenizer.from_pretrained(out / "final") is not None


def test_both_stages_produce_a_loadable_pipeline(occ3d_root, tmp_path):
    import numpy as np

    from occsim.pipeline import OccSoraPipeline
    from occsim.train import DiTTrainConfig
    from occsim.train.dit_stage import train_dit

    tokenizer = train_tokenizer(tiny_config(occ3d_root["root"], tmp_path / "tok"))
    config = load_config(
        DiTTrainConfig,
        overrides=[
            f"tokenizer={tokenizer}",
            "preset=tiny",
            "data.source=occ3d",
            f"data.root={occ3d_root['root']}",
            "data.clip_len=4",
            "optim.max_steps=3",
            "optim.batch_size=1",
            "run.checkpoint_every=2",
            "run.validate_every=3",
            f"run.output_dir={tmp_path / 'dit'}",
            f"latent_cache={tmp_path / 'latents.safetensors'}",
            "segment_len=4",
        ],
    )
    folder = train_dit(config)
    pipe = OccSoraPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    transformer = pipe.transformer.config
    assert transformer.latent_frames == 2 and transformer.trajectory_length == 4
    assert transformer.latent_scale > 0  # measured on the data, not a magic constant
    out = pipe(np.zeros((1, 4, 2), dtype=np.float32), num_inference_steps=2)
    assert out.occupancy.shape == (1, 4, 200, 200, 16)
    with pytest.raises(FileNotFoundError, match="not a save_pretrained folder"):
        train_dit(load_config(DiTTrainConfig, overrides=[f"tokenizer={tmp_path / 'none'}"]))


def test_dit_stage_resumes(occ3d_root, tmp_path, one_thread):
    from occsim.dit import OccDiT
    from occsim.train import DiTTrainConfig
    from occsim.train.dit_stage import train_dit

    tokenizer = train_tokenizer(tiny_config(occ3d_root["root"], tmp_path / "tok"))

    def config(out, steps):
        return load_config(
            DiTTrainConfig,
            overrides=[
                f"tokenizer={tokenizer}",
                "preset=tiny",
                "data.source=occ3d",
                f"data.root={occ3d_root['root']}",
                "data.clip_len=4",
                f"optim.max_steps={steps}",
                "optim.batch_size=1",
                "run.checkpoint_every=2",
                "run.validate_every=100",
                f"run.output_dir={out}",
            ],
        )

    straight = train_dit(config(tmp_path / "a", 4))
    train_dit(config(tmp_path / "b", 4))
    import shutil

    shutil.rmtree(list_checkpoints(tmp_path / "b")[-1])  # as if killed after step 2
    resumed = train_dit(config(tmp_path / "b", 4), resume="latest")
    expected = OccDiT.from_pretrained(straight / "transformer").state_dict()
    got = OccDiT.from_pretrained(resumed / "transformer").state_dict()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_latent_cache_windows_match_direct_encoding(occ3d_root, tmp_path):
    import os

    from occsim.data import Occ3DDataset
    from occsim.train.latent_cache import load_or_build_cache

    tokenizer = OccTokenizer.from_pretrained(
        train_tokenizer(tiny_config(occ3d_root["root"], tmp_path / "tok"))
    )
    segments = Occ3DDataset(occ3d_root["root"], clip_len=4, stride=4, drop_short_scenes=True)
    path = tmp_path / "latents.safetensors"
    cache = load_or_build_cache(path, tokenizer, segments, "data-a")
    assert len(cache) == len(segments) and cache.windows_per_segment(1) == 2
    first = cache.window(tokenizer, torch.tensor([0, 1]), latent_frames=1)
    item = segments[0]
    with torch.no_grad():
        direct = tokenizer.encode(torch.from_numpy(item["occupancy"][None, :2])).latents
    assert torch.equal(first["latents"][:1], direct)  # causal: the segment's past is empty
    torch.testing.assert_close(first["trajectory"][0], torch.from_numpy(item["trajectory"][:2]))
    assert first["trajectory"][1, 0].abs().max() == 0  # each window in its own first frame
    stamp = os.stat(path).st_mtime_ns
    load_or_build_cache(path, tokenizer, segments, "data-a")
    assert os.stat(path).st_mtime_ns == stamp  # reused, not rebuilt
    load_or_build_cache(path, tokenizer, segments, "data-b")
    assert os.stat(path).st_mtime_ns != stamp  # another dataset: rebuilt


def test_decoder_fine_tuning_keeps_the_latent_space(occ3d_root, tmp_path):
    root = occ3d_root["root"]
    base = train_tokenizer(tiny_config(root, tmp_path / "base"))
    tuned = train_tokenizer(
        tiny_config(
            root,
            tmp_path / "tuned",
            f"init_from={base}",
            "freeze_encoder=true",
            "class_weighting=inverse_sqrt_frequency",
            "optim.learning_rate=0.01",
        )
    )
    before, after = weights(base), weights(tuned)
    decoder = ("from_latent", "decoder_", "head")  # head, head_split, head_block
    for key in before:
        if key.startswith(decoder):
            continue
        assert torch.equal(before[key], after[key]), f"{key} changed under freeze_encoder"
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(decoder))
    # Fine-tuning without a model to start from, or an unknown weighting, is refused early.
    with pytest.raises(ValueError, match="set init_from"):
        train_tokenizer(tiny_config(root, tmp_path / "x", "freeze_encoder=true"))
    with pytest.raises(ValueError, match="unknown class_weighting 'rare'"):
        train_tokenizer(tiny_config(root, tmp_path / "y", "class_weighting=rare"))
    with pytest.raises(FileNotFoundError, match="not a tokenizer folder"):
        train_tokenizer(tiny_config(root, tmp_path / "z", f"init_from={tmp_path / 'none'}"))
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()


def test_command_line_overrides_may_follow_options():
    from occsim.cli import build_parser
    from occsim.train.cli import parse_with_overrides

    parser = build_parser()
    args = parse_with_overrides(parser, ["train", "tokenizer", "a=1", "--config", "f.yaml", "b=2"])
    assert args.config == "f.yaml" and args.overrides == ["a=1", "b=2"]
    for bad in (["train", "tokenizer", "--bogus"], ["train", "dit", "--config", "f", "loose"]):
        with pytest.raises(SystemExit):
            parse_with_overrides(parser, bad)
    with pytest.raises(SystemExit):
        parse_with_overrides(parser, ["bench", "a=1"])  # no overrides there
