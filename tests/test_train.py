import io

import numpy as np
import pytest
import torch

from occsim.tokenizer import OccTokenizer
from occsim.train import TokenizerTrainConfig, load_config
from occsim.train.checkpoint import list_checkpoints
from occsim.train.tokenizer_stage import train_tokenizer


def tiny_dit(tokenizer, root) -> list[str]:
    """Overrides of a tiny DiT run on the Occ3D fixture with a trained tokenizer."""
    return [f"tokenizer={tokenizer}", "preset=tiny", "data.source=occ3d", f"data.root={root}"]


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
            "run.image_every=0",  # decoding a whole clip for an image costs seconds
            f"run.output_dir={out}",
            *extra,
        ],
    )


def tensorboard_events(run_dir):
    """The loaded tensorboard log of a run (``OUTPUT/STAGE``; hyper-parameters lie in a
    sub-folder of it)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = {path.parent for path in run_dir.glob("*/events.out.tfevents.*")}
    return EventAccumulator(str(events)).Reload()


def logged_images(run_dir, tag: str) -> dict[int, np.ndarray]:
    """Step -> decoded RGB image of a tensorboard image tag."""
    from PIL import Image

    return {
        event.step: np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))
        for event in tensorboard_events(run_dir).Images(tag)
    }


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


def run_two_processes(*args: str) -> None:
    """``python -m occsim.train ARGS`` as two CPU processes (gloo DDP); fails the test with
    the workers' errors, not just torchrun's summary."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["-m", "occsim.train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    errors = [line for line in result.stderr.splitlines() if "Error" in line]
    assert result.returncode == 0, "\n".join(errors[:10]) or result.stderr[-2000:]


def test_two_process_cpu_ddp_produces_a_loadable_checkpoint(occ3d_root, tmp_path):
    from occsim.train.checkpoint import load_state

    out = tmp_path / "ddp"
    run_two_processes(
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
    )
    (checkpoint,) = list_checkpoints(out)
    assert load_state(checkpoint)["world_size"] == 2
    assert OccTokenizer.from_pretrained(checkpoint / "tokenizer").config.codebook_size == 64
    assert OccTokenizer.from_pretrained(out / "final") is not None


def test_two_process_cpu_ddp_trains_the_dit(occ3d_root, tmp_path):
    """The DiT stage under gloo DDP (the loss once read ``config`` off the DDP wrapper)."""
    from occsim.pipeline import OccSoraPipeline
    from occsim.train.checkpoint import load_state

    torch.manual_seed(0)
    tokenizer = tmp_path / "tok"
    OccTokenizer.from_preset("tiny").save_pretrained(tokenizer)  # untrained is enough here
    out = tmp_path / "ddp"
    run_two_processes(
        "dit",
        *tiny_dit(tokenizer, occ3d_root["root"]),
        "data.clip_len=4",
        "optim.max_steps=2",
        "optim.batch_size=1",
        "trajectory_dropout=0.5",
        "run.checkpoint_every=2",
        "run.validate_every=100",
        "run.log_every=1",
        "run.image_every=0",
        f"run.output_dir={out}",
        f"latent_cache={tmp_path / 'latents.safetensors'}",
        "segment_len=4",
    )
    (checkpoint,) = list_checkpoints(out)
    assert load_state(checkpoint)["world_size"] == 2
    pipe = OccSoraPipeline.from_pretrained(out / "pipeline")
    assert pipe.transformer.config.latent_frames == 2
    scalars = tensorboard_events(out)
    assert scalars.Scalars("loss/mse")[-1].step == 2  # the main process logged both steps
    assert scalars.Tags()["images"] == []  # image_every=0 writes none


def test_both_stages_produce_a_loadable_pipeline(occ3d_root, tmp_path):
    import numpy as np

    from occsim.pipeline import OccSoraPipeline
    from occsim.train import DiTTrainConfig
    from occsim.train.dit_stage import train_dit

    tokenizer = train_tokenizer(tiny_config(occ3d_root["root"], tmp_path / "tok"))
    config = load_config(
        DiTTrainConfig,
        overrides=[
            *tiny_dit(tokenizer, occ3d_root["root"]),
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
                *tiny_dit(tokenizer, occ3d_root["root"]),
                "data.clip_len=4",
                f"optim.max_steps={steps}",
                "optim.batch_size=1",
                "run.checkpoint_every=2",
                "run.validate_every=100",
                "run.image_every=0",
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


def test_image_every_writes_bev_images_of_both_stages(occ3d_root, tmp_path):
    from occsim.render import render_bev
    from occsim.train import DiTTrainConfig, RunConfig
    from occsim.train.dit_stage import train_dit
    from occsim.train.loop import images_due

    # Every image_every steps and after the last one; 0 writes none.
    assert [d for d in range(1, 8) if images_due(d, RunConfig(image_every=3), 7)] == [3, 6, 7]
    assert not any(images_due(d, RunConfig(image_every=0), 7) for d in range(1, 8))

    semantics = occ3d_root["semantics"]
    images_at_2 = ["optim.max_steps=2", "run.image_every=2", "data.num_workers=2"]
    tokenizer = train_tokenizer(tiny_config(occ3d_root["root"], tmp_path / "tok", *images_at_2))
    images = logged_images(tmp_path / "tok", "images/truth_vs_reconstruction")
    assert list(images) == [2] and images[2].shape == (200, 400, 3)
    # Truth | reconstruction of the last frame of the first validation clip (scene-0002,
    # frames 0-1), by the tokenizer of step 2 (the final one).
    clip = torch.from_numpy(semantics["scene-0002"][None, :2]).long()
    with torch.no_grad():
        reconstruction = OccTokenizer.from_pretrained(tokenizer).reconstruct(clip)[0, -1]
    assert np.array_equal(images[2][:, :200], render_bev(semantics["scene-0002"][1], scale=1))
    assert np.array_equal(images[2][:, 200:], render_bev(reconstruction.numpy(), scale=1))

    config = load_config(
        DiTTrainConfig,
        overrides=[
            *tiny_dit(tokenizer, occ3d_root["root"]),
            "data.clip_len=4",  # the 3-frame validation scene gives no clip: training clip
            "optim.batch_size=1",
            "run.checkpoint_every=100",
            "run.validate_every=100",
            f"run.output_dir={tmp_path / 'dit'}",
            *images_at_2,
        ],
    )
    train_dit(config)
    images = logged_images(tmp_path / "dit", "images/truth_vs_forecast")
    assert list(images) == [2] and images[2].shape == (200, 400, 3)
    # Truth | forecast of the last frame of the first training clip (scene-0001, 0-3).
    assert np.array_equal(images[2][:, :200], render_bev(semantics["scene-0001"][3], scale=1))
    assert not np.array_equal(images[2][:, 200:], images[2][:, :200])

    with pytest.raises(ValueError, match="'run.image_every' must be >= 0"):
        train_tokenizer(tiny_config(occ3d_root["root"], tmp_path / "x", "run.image_every=-1"))
    with pytest.raises(ValueError, match="'data.num_workers' must be >= 0"):
        train_dit(load_config(DiTTrainConfig, overrides=["data.num_workers=-2"]))
    assert not (tmp_path / "x").exists()


def test_loader_workers_do_not_change_the_batches(occ3d_root):
    from occsim.data import Occ3DDataset
    from occsim.train import OptimConfig
    from occsim.train.data import StepBatches, load_clips, micro_batches, step_loader

    dataset = Occ3DDataset(occ3d_root["root"], clip_len=2)
    optim = OptimConfig(batch_size=1, gradient_accumulation=2)

    def batches(steps: range, workers: int) -> list:
        loaded = StepBatches(dataset, len(dataset), steps, optim, seed=3, world=2, rank=1)
        return list(step_loader(loaded, workers))

    here, workers = batches(range(4), 0), batches(range(4), 2)
    resumed = batches(range(2, 4), 2)
    assert len(here) == len(workers) == 4 and len(resumed) == 2
    for step, (a, b) in enumerate(zip(here, workers)):
        expected = micro_batches(len(dataset), step, 1, 2, seed=3, world=2, rank=1)
        assert len(a) == len(b) == 2  # micro-batches of the step
        for part, a_part, b_part in zip(expected, a, b):
            assert torch.equal(a_part["indices"], part) and torch.equal(b_part["indices"], part)
            clips = load_clips(dataset, part)
            for key in ("occupancy", "trajectory"):
                assert torch.equal(a_part[key], clips[key]) and torch.equal(b_part[key], clips[key])
    for a, b in zip(here[2:], resumed):  # a resumed run starts at the same batches
        assert all(torch.equal(x["occupancy"], y["occupancy"]) for x, y in zip(a, b))
    indices_only = StepBatches(None, 10, range(2), optim, seed=3, world=1, rank=0)
    assert list(indices_only[1][0]) == ["indices"]


def test_diffusion_losses_read_only_the_model_output():
    """A wrapper without ``config`` (as DDP is) gives the very losses of the bare model."""
    from occsim.diffusion import diffusion_losses, make_training_scheduler
    from occsim.dit import OccDiT

    class Wrapper(torch.nn.Module):
        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__()
            self.module = module

        def forward(self, *args):
            return self.module(*args)

    torch.manual_seed(0)
    scheduler = make_training_scheduler()
    latents, trajectory = torch.randn(2, 8, 2, 10, 10), torch.randn(2, 4, 2)

    def losses(model):
        generator = torch.Generator().manual_seed(0)
        return diffusion_losses(model, scheduler, latents, trajectory, generator=generator)

    for learn_sigma in (True, False):
        model = OccDiT.from_preset("tiny", learn_sigma=learn_sigma)
        torch.nn.init.normal_(model.final_layer.linear.weight, std=0.1)  # not all zeros
        bare, wrapped = losses(model), losses(Wrapper(model))
        for key in bare:
            assert torch.equal(bare[key], wrapped[key]), key
        assert (bare["vlb"] > 0) == learn_sigma  # the bound needs the variance channels

    def three_channel_groups(*args):
        return torch.zeros(2, 24, 2, 10, 10)

    with pytest.raises(ValueError, match="24 channels; expected 8 .* or 16"):
        diffusion_losses(three_channel_groups, scheduler, latents, trajectory)


def test_a_dit_learns_to_see_the_memory_from_a_trained_one(occ3d_root, tmp_path, one_thread):
    from occsim.data import Occ3DDataset
    from occsim.dit import OccDiT
    from occsim.ground_prior import ground_prior
    from occsim.memory_condition import memory_condition, memory_views
    from occsim.train import DiTTrainConfig
    from occsim.train.dit_stage import train_dit
    from occsim.train.latent_cache import load_or_build_cache

    root = occ3d_root["root"]
    tokenizer_dir = train_tokenizer(tiny_config(root, tmp_path / "tok"))
    cache_path = tmp_path / "latents.safetensors"

    def config(out, *extra):
        return load_config(
            DiTTrainConfig,
            overrides=[
                *tiny_dit(tokenizer_dir, root),
                "data.clip_len=4",
                "optim.max_steps=3",
                "optim.batch_size=2",
                "run.validate_every=100",
                "run.image_every=0",
                "prediction_type=sample",
                f"run.output_dir={out}",
                f"latent_cache={cache_path}",
                "segment_len=4",
                *extra,
            ],
        )

    # With the motion prior, as the shipped DiT: its padding is what the ground run changes.
    base = train_dit(config(tmp_path / "base", "model_overrides={context_prior: true}"))
    with pytest.raises(ValueError, match="only memory_conditioning may be added"):
        train_dit(config(tmp_path / "x", f"init_from={base}", "model_overrides={depth: 3}"))
    grown = train_dit(
        config(
            tmp_path / "memory",
            f"init_from={base}",
            "model_overrides={memory_conditioning: true}",
            "memory_dropout=0",
            "optim.learning_rate=0.01",
        )
    )
    bordered = train_dit(
        config(
            tmp_path / "border",
            f"init_from={base}",
            "model_overrides={prior_padding: border}",
            "optim.max_steps=1",
        )
    )
    assert OccDiT.from_pretrained(bordered / "transformer").config.prior_padding == "border"
    ground_cache = tmp_path / "ground.safetensors"
    grounded = train_dit(
        config(
            tmp_path / "ground",
            f"init_from={base}",
            "model_overrides={prior_padding: ground}",
            f"latent_cache={ground_cache}",
            "optim.max_steps=1",
        )
    )
    assert OccDiT.from_pretrained(grounded / "transformer").config.prior_padding == "ground"
    before = OccDiT.from_pretrained(base / "transformer")
    after = OccDiT.from_pretrained(grown / "transformer")
    assert after.config.memory_conditioning and not before.config.memory_conditioning
    old = before.x_embedder.in_features
    assert after.x_embedder.weight[:, old:].abs().max() > 0  # the memory inputs trained
    # The cache now holds the memory's views, as memory_views + memory_condition build them.
    tokenizer = OccTokenizer.from_pretrained(tokenizer_dir)
    segments = Occ3DDataset(root, clip_len=4, stride=4, drop_short_scenes=True)
    cache = load_or_build_cache(cache_path, tokenizer, segments, "unused", memory=True)
    assert cache.has_memory
    window = cache.window(tokenizer, torch.tensor([0]), latent_frames=2)
    item = segments[0]
    views = memory_views(item["occupancy"], item["trajectory"], 2, 2)
    expected = memory_condition(tokenizer, views)  # (1, C + 1, 1, h, w): latent frame 1
    assert window["memory_present"].tolist() == [[False, True]]
    c = tokenizer.config.latent_channels
    torch.testing.assert_close(window["memory"][:, :c, 1:], expected[:, :c])
    torch.testing.assert_close(window["memory"][:, c:, 1:], expected[:, c:], atol=1e-3, rtol=0)
    # The ground run's cache holds the views with the ground carried on, as ground_prior
    # encodes them at inference.
    carried = load_or_build_cache(ground_cache, tokenizer, segments, "unused", ground=True)
    assert carried.has_ground and not carried.has_memory
    window = carried.window(tokenizer, torch.tensor([0]), latent_frames=2)
    assert window["new_space_present"].tolist() == [[False, True]]
    torch.testing.assert_close(window["new_space"][:, :, 1:], ground_prior(tokenizer, views))
