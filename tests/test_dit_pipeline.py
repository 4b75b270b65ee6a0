import re

import numpy as np
import pytest
import torch
from conftest import randomize
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from occsim.diffusion import (
    diffusion_losses,
    make_training_scheduler,
    predicted_sample,
    variational_bound,
)
from occsim.dit import OccDiT
from occsim.pipeline import OccSoraPipeline
from occsim.tokenizer import OccTokenizer

GRID = (40, 40, 16)


@pytest.fixture(scope="module")
def pipe() -> OccSoraPipeline:
    torch.manual_seed(0)
    tokenizer = OccTokenizer.from_preset("tiny", grid_size=GRID).eval()
    transformer = OccDiT.from_preset("tiny").eval()
    randomize(transformer)
    return OccSoraPipeline(tokenizer, transformer, make_training_scheduler())


def trajectories(batch: int) -> np.ndarray:
    speeds = np.linspace(2.0, 6.0, batch)[:, None, None]
    steps = np.arange(4, dtype=np.float32)[None, :, None]
    return np.concatenate([speeds * steps, np.zeros((batch, 4, 1))], axis=-1).astype(np.float32)


def run(pipe, **kwargs):
    kwargs.setdefault("trajectory", trajectories(1))
    kwargs.setdefault("num_inference_steps", 4)
    kwargs.setdefault("generator", torch.Generator().manual_seed(0))
    return pipe(**kwargs)


@pytest.mark.parametrize("batch", [1, 3])
def test_shapes(pipe, batch):
    out = run(pipe, trajectory=trajectories(batch))
    assert out.occupancy.shape == (batch, 4, *GRID) and out.occupancy.dtype == np.uint8
    assert out.latents.shape == (batch, 8, 2, 10, 10)


def test_same_seed_same_output_different_seed_different(pipe):
    a, b = run(pipe), run(pipe)
    c = run(pipe, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.latents, b.latents) and np.array_equal(a.occupancy, b.occupancy)
    assert not torch.allclose(a.latents, c.latents)


def test_context_latents_come_back_unchanged(pipe):
    context = torch.randn(2, 8, 1, 10, 10, generator=torch.Generator().manual_seed(3))
    out = run(pipe, trajectory=trajectories(2), context=context)
    assert torch.equal(out.latents[:, :, :1], context)
    assert out.occupancy.shape == (2, 2, *GRID)  # only the generated latent frame is decoded


def test_guidance_uses_the_null_trajectory(pipe):
    base = run(pipe, guidance_scale=1.0).latents
    guided = run(pipe, guidance_scale=3.0).latents
    assert not torch.allclose(base, guided)
    null = pipe.transformer.y_embedder.null
    saved = null.detach().clone()
    with torch.no_grad():
        null.add_(1.0)
    try:
        # Scale 1 is the conditional output alone: the null embedding does not enter it.
        assert torch.equal(run(pipe, guidance_scale=1.0).latents, base)
        assert not torch.allclose(run(pipe, guidance_scale=3.0).latents, guided)
    finally:
        with torch.no_grad():
            null.copy_(saved)


@pytest.mark.parametrize(
    "scheduler_class",
    [
        DDPMScheduler,
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        UniPCMultistepScheduler,
        EulerDiscreteScheduler,
    ],
)
def test_every_scheduler_runs_ten_steps(pipe, scheduler_class):
    original = pipe.scheduler
    pipe.scheduler = scheduler_class.from_config(original.config)
    try:
        out = run(pipe, num_inference_steps=10)
    finally:
        pipe.scheduler = original
    assert out.occupancy.shape == (1, 4, *GRID)
    assert torch.isfinite(out.latents).all()


SOLVERS = [DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler]


def rebuilt(pipe, scheduler) -> OccSoraPipeline:
    """A pipeline of the fixture's models with its own scheduler, the fixture left as is."""
    built = OccSoraPipeline(pipe.tokenizer, pipe.transformer, scheduler)
    built.set_progress_bar_config(disable=True)
    return built


def settings(scheduler) -> dict:
    """A scheduler's config without diffusers' bookkeeping (class name, version, defaults)."""
    return {k: v for k, v in scheduler.config.items() if not k.startswith("_")}


@pytest.mark.parametrize("scheduler_class", SOLVERS)
def test_solver_variance_is_fixed_when_built_and_calls_leave_the_config(pipe, scheduler_class):
    solver = scheduler_class.from_config(pipe.scheduler.config)
    assert solver.config["variance_type"] == "learned_range"  # inherited from training
    built = rebuilt(pipe, solver)
    assert built.scheduler is solver and solver.config["variance_type"] is None
    before = dict(built.scheduler.config)
    first = run(built)
    assert dict(built.scheduler.config) == before
    second = run(built)
    assert dict(built.scheduler.config) == before
    assert torch.equal(first.latents, second.latents)
    # The variance head is ignored: the samples of a solver that never had a learned variance.
    plain = scheduler_class.from_config({**pipe.scheduler.config, "variance_type": None})
    assert torch.equal(run(rebuilt(pipe, plain)).latents, first.latents)


def test_ddpm_keeps_and_samples_with_the_learned_variance(pipe):
    built = rebuilt(pipe, DDPMScheduler.from_config(pipe.scheduler.config))
    before = dict(built.scheduler.config)
    assert before["variance_type"] == "learned_range"
    learned = run(built).latents
    assert dict(built.scheduler.config) == before
    fixed = DDPMScheduler.from_config(pipe.scheduler.config, variance_type="fixed_small")
    assert not torch.allclose(run(rebuilt(pipe, fixed)).latents, learned)


@pytest.mark.parametrize("scheduler_class", SOLVERS)
def test_swapped_in_solver_has_the_variance_switched_off(pipe, scheduler_class):
    built = rebuilt(pipe, pipe.scheduler)
    built.scheduler = scheduler_class.from_config(built.scheduler.config)
    assert built.scheduler.config["variance_type"] is None
    assert built.config.scheduler == ("diffusers", scheduler_class.__name__)  # model index
    built.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    assert built.scheduler.config["variance_type"] == "learned_range"


def test_save_and_load_keeps_the_solver_variance_setting(pipe, tmp_path):
    built = rebuilt(pipe, DPMSolverMultistepScheduler.from_config(pipe.scheduler.config))
    built.save_pretrained(tmp_path / "pipe")
    loaded = OccSoraPipeline.from_pretrained(tmp_path / "pipe")
    assert isinstance(loaded.scheduler, DPMSolverMultistepScheduler)
    assert settings(loaded.scheduler) == settings(built.scheduler)
    assert loaded.scheduler.config["variance_type"] is None
    assert torch.equal(run(built).latents, run(loaded).latents)
    # A solver loaded from a training (DDPM) folder is switched off by from_pretrained too.
    pipe.save_pretrained(tmp_path / "training")
    solver = DPMSolverMultistepScheduler.from_pretrained(
        tmp_path / "training", subfolder="scheduler"
    )
    loaded = OccSoraPipeline.from_pretrained(tmp_path / "training", scheduler=solver)
    assert loaded.scheduler.config["variance_type"] is None


def test_strength_starts_from_given_latents(pipe):
    start = run(pipe).latents
    near = run(pipe, strength=0.2, latents=start, num_inference_steps=10).latents
    far = run(
        pipe, strength=1.0, num_inference_steps=10, generator=torch.Generator().manual_seed(5)
    ).latents
    assert (near - start).abs().mean() < (far - start).abs().mean()


def test_save_and_load_as_one_folder(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "pipe")
    for part in ("tokenizer", "transformer", "scheduler"):
        assert (tmp_path / "pipe" / part).is_dir()
    loaded = OccSoraPipeline.from_pretrained(tmp_path / "pipe")
    assert torch.equal(run(pipe).latents, run(loaded).latents)


def test_a_folder_loads_in_the_dtype_asked_for_either_way_and_with_given_parts(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "pipe")
    plain = OccSoraPipeline.from_pretrained(tmp_path / "pipe")
    assert plain.transformer.dtype == torch.float32 and plain.tokenizer.dtype == torch.float32
    assert plain.config._name_or_path == str(tmp_path / "pipe")
    for key in ("dtype", "torch_dtype"):  # occsim's name and diffusers' name
        loaded = OccSoraPipeline.from_pretrained(tmp_path / "pipe", **{key: torch.float64})
        assert loaded.transformer.dtype == torch.float64, key
        assert loaded.tokenizer.dtype == torch.float64, key
    solver = DDIMScheduler(prediction_type="sample")
    swapped = OccSoraPipeline.from_pretrained(tmp_path / "pipe", scheduler=solver)
    assert swapped.scheduler is solver


def test_latents_are_shifted_then_scaled_into_the_diffusion_space():
    torch.manual_seed(0)
    tokenizer = OccTokenizer.from_preset("tiny", grid_size=GRID).eval()
    transformer = OccDiT.from_preset("tiny", latent_scale=2.0, latent_shift=0.5).eval()
    scaled = OccSoraPipeline(tokenizer, transformer, make_training_scheduler())
    latents = torch.tensor([1.5, 0.5, -1.0])
    # (z - 0.5) * 2, worked by hand; denormalize undoes it.
    torch.testing.assert_close(scaled.normalize(latents), torch.tensor([2.0, 0.0, -3.0]))
    torch.testing.assert_close(scaled.denormalize(torch.tensor([2.0, 0.0, -3.0])), latents)


def test_bad_input(pipe):
    with pytest.raises(ValueError, match="trajectory must have shape"):
        run(pipe, trajectory=np.zeros((1, 3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="finite"):
        run(pipe, trajectory=np.full((1, 4, 2), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="context must have shape"):
        run(pipe, context=torch.zeros(1, 8, 2, 10, 10))
    with pytest.raises(ValueError, match="strength"):
        run(pipe, strength=0.5)


def test_each_bad_input_is_refused_with_a_message_naming_it(pipe):
    config = pipe.transformer.config
    c, t, (h, w) = config.latent_channels, config.latent_frames, config.latent_size
    good = torch.zeros(1, c, 1, h, w)
    with pytest.raises(ValueError, match=r"^trajectory must be finite, got NaN or inf$"):
        run(pipe, trajectory=np.full((1, 4, 2), np.nan, dtype=np.float32))
    # One wrong size at a time: batch, channels, height and width, no context frame.
    shape = re.escape(f"context must have shape (1, {c}, k, {h}, {w}) with 0 < k < {t}, got ")
    for bad in (
        torch.zeros(2, c, 1, h, w),
        torch.zeros(1, c + 1, 1, h, w),
        torch.zeros(1, c, 1, h, w + 1),
        torch.zeros(1, c, 0, h, w),
    ):
        with pytest.raises(ValueError, match="^" + shape + re.escape(str(tuple(bad.shape)))):
            run(pipe, context=bad)
    with pytest.raises(ValueError, match=r"^context latents must be finite$"):
        run(pipe, context=torch.full_like(good, torch.nan))
    for strength in (0.0, 1.5):
        with pytest.raises(ValueError, match=rf"^strength must lie in \(0, 1\], got {strength}$"):
            run(pipe, strength=strength, latents=good)
    message = "strength < 1 needs the latents to start from (`latents=`)"
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        run(pipe, strength=0.5)
    with pytest.raises(
        ValueError, match=r"^memory was given but this DiT has no memory_conditioning$"
    ):
        run(pipe, memory=torch.zeros(1, c + 1, t, h, w))


def test_a_waypoint_list_of_one_trajectory_is_a_batch_of_one(pipe):
    one = run(pipe, trajectory=trajectories(1)[0]).latents  # (T, 2), no batch axis
    torch.testing.assert_close(one, run(pipe).latents)


def test_the_memory_and_the_ground_are_taken_in_the_model_dtype_and_must_be_finite():
    from test_memory_condition import tiny_dit

    torch.manual_seed(0)
    tokenizer = OccTokenizer.from_preset("tiny", grid_size=GRID).eval()
    c, _, h, w = tokenizer.latent_shape(2)
    both = tiny_dit(
        latent_channels=c,
        latent_size=(h, w),
        context_prior=True,
        memory_conditioning=True,
        prior_padding="ground",
    )
    scheduler = DDIMScheduler(prediction_type="sample", timestep_spacing="trailing")
    pipe = OccSoraPipeline(tokenizer, both, scheduler)
    pipe.set_progress_bar_config(disable=True)
    context, trajectory = torch.randn(1, c, 1, h, w), trajectories(1)
    memory, ground = torch.rand(1, c + 1, 1, h, w), torch.randn(1, c, 1, h, w)
    kwargs = dict(context=context, num_inference_steps=1, output_type="latent")
    seeded = {"generator": torch.Generator().manual_seed(0)}
    single = pipe(trajectory, memory=memory, new_space=ground, **kwargs, **seeded).latents
    # Given in float64, both are cast to the model's float32: the same window.
    seeded = {"generator": torch.Generator().manual_seed(0)}
    double = pipe(trajectory, memory=memory.double(), new_space=ground.double(), **kwargs, **seeded)
    torch.testing.assert_close(double.latents, single)
    for name, value in (("memory", memory), ("new_space", ground)):
        bad = {"memory": memory, "new_space": ground, name: torch.full_like(value, torch.inf)}
        with pytest.raises(ValueError, match=rf"^{name} must be finite$"):
            pipe(trajectory, **bad, **kwargs)


def test_dit_zero_init_and_presets():
    model = OccDiT.from_preset("tiny")
    out = model(torch.randn(2, 8, 2, 10, 10), torch.tensor([3, 700]), torch.randn(2, 4, 2))
    assert out.shape == (2, 16, 2, 10, 10) and torch.count_nonzero(out) == 0  # adaLN-Zero
    with torch.device("meta"):
        paper = OccDiT.from_preset("paper")
    assert paper.token_grid == (4, 25, 25)
    assert sum(p.numel() for p in paper.parameters()) == 675_474_304


def test_losses_and_variational_bound():
    torch.manual_seed(0)
    model = OccDiT.from_preset("tiny")
    randomize(model)
    scheduler = make_training_scheduler()
    latents = torch.randn(2, 8, 2, 10, 10)
    mask = torch.tensor([[True, False], [False, False]])
    losses = diffusion_losses(
        model,
        scheduler,
        latents,
        torch.randn(2, 4, 2),
        mask,
        generator=torch.Generator().manual_seed(0),
    )
    assert set(losses) == {"mse", "vlb", "total"} and losses["vlb"] > 0
    losses["total"].backward()
    assert model.y_embedder.mlp[0].weight.grad is not None
    simple = diffusion_losses(model, scheduler, latents, torch.randn(2, 4, 2), use_vlb=False)
    assert simple["vlb"] == 0
    # The bound is smallest when the predicted sample is the true one and the variance is
    # the true posterior's (variance value -1 is the lower end of the learned range).
    x0 = torch.randn(1, 8, 2, 10, 10)
    noise = torch.randn_like(x0)
    t = torch.tensor([500])
    xt = scheduler.add_noise(x0, noise, t)
    exact = variational_bound(scheduler, x0, xt, t, x0, -torch.ones_like(x0)).mean()
    wrong = variational_bound(scheduler, x0, xt, t, x0 + 0.5, torch.ones_like(x0)).mean()
    assert exact.abs() < 1e-4 < wrong


@pytest.mark.parametrize("kind", ["epsilon", "sample", "v_prediction"])
def test_prediction_types_recover_the_clean_sample(kind):
    """Each target, fed back as the prediction, gives the clean sample back."""
    scheduler = make_training_scheduler(prediction_type=kind)
    x0 = torch.randn(2, 8, 2, 10, 10)
    noise = torch.randn_like(x0)
    t = torch.tensor([10, 900])
    xt = scheduler.add_noise(x0, noise, t)
    target = {"epsilon": noise, "sample": x0}.get(kind)
    if target is None:
        target = scheduler.get_velocity(x0, noise, t)
    torch.testing.assert_close(predicted_sample(scheduler, target, xt, t), x0, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="prediction_type"):
        make_training_scheduler(prediction_type="noise")


def test_default_dit_learns_one_clip_beyond_its_prior():
    """The shipped configuration (default size, clean-latent prediction, the ego-motion
    prior, one latent frame of context) learns one clip's next latent frame: the loss falls
    5x within 150 steps, and the generated frames (DDIM, bundled tokenizer) beat the prior
    alone, which is what the untrained model outputs, by 20 mIoU (31.7 -> 73 on this
    machine)."""
    from occsim.assets import asset_path
    from occsim.data import ProceduralClips
    from occsim.metrics import OccupancyMetrics

    torch.manual_seed(0)
    tokenizer = OccTokenizer.from_pretrained(asset_path("default_model", "tokenizer"))
    tokenizer = tokenizer.float().eval()
    clip = ProceduralClips(1, clip_len=8, seed=123)[0]
    with torch.no_grad():
        latents = tokenizer.encode(torch.from_numpy(clip["occupancy"][None])).latents
        truth = tokenizer.decode_classes(latents)[0, 4:].numpy()
    trajectory = torch.from_numpy(clip["trajectory"][None, :, :2])
    shift, scale = float(latents.mean()), float(1.0 / latents.std())
    model = OccDiT.from_preset(
        "default", latent_shift=shift, latent_scale=scale, context_prior=True
    )
    scheduler = make_training_scheduler(prediction_type="sample")
    batch = 4
    clean = ((latents - shift) * scale).expand(batch, -1, -1, -1, -1)
    context = torch.tensor([[True, False]]).expand(batch, -1)

    def miou() -> float:
        pipe = OccSoraPipeline(tokenizer, model.eval(), DDIMScheduler.from_config(scheduler.config))
        pipe.set_progress_bar_config(disable=True)
        out = pipe(
            trajectory.numpy(),
            context=latents[:, :, :1],
            guidance_scale=1.0,
            generator=torch.Generator().manual_seed(1),
        )
        metrics = OccupancyMetrics()
        metrics.update(out.occupancy[0], truth)
        model.train()
        return metrics.compute().miou

    prior_only = miou()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    history = []
    for _ in range(150):
        losses = diffusion_losses(
            model, scheduler, clean, trajectory.expand(batch, -1, -1), context, generator=generator
        )
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        history.append(losses["mse"].item())
    assert np.mean(history[-20:]) < np.mean(history[:20]) / 5
    assert miou() >= prior_only + 20.0


def test_solver_steps_and_guidance_are_checked_before_sampling(pipe):
    with pytest.raises(ValueError, match="num_inference_steps"):
        run(pipe, num_inference_steps=0)
    with pytest.raises(ValueError, match="guidance_scale"):
        run(pipe, guidance_scale=float("nan"))
    with pytest.raises(TypeError, match="num_inference_steps"):
        run(pipe, num_inference_steps=2.5)


def test_load_world_model_takes_a_timestep_spacing(tiny_pipeline_path):
    from occsim.world_model import load_world_model

    pipe = load_world_model(tiny_pipeline_path, timestep_spacing="trailing")
    pipe.scheduler.set_timesteps(2)
    assert pipe.scheduler.timesteps.tolist() == [999, 499]  # starts from pure noise
    pipe = load_world_model(tiny_pipeline_path, timestep_spacing="leading")
    pipe.scheduler.set_timesteps(2)
    assert pipe.scheduler.timesteps.tolist() == [500, 0]
    with pytest.raises(ValueError, match="timestep_spacing 'late' is not one of"):
        load_world_model(tiny_pipeline_path, timestep_spacing="late")
    # The pipeline itself refuses to start from pure noise at t=0 (one leading step).
    pipe = load_world_model(tiny_pipeline_path, timestep_spacing="leading")
    window = np.zeros((1, pipe.transformer.config.trajectory_length, 2), np.float32)
    with pytest.raises(ValueError, match=r"1 solver step\(s\) with timestep_spacing 'leading'"):
        run(pipe, trajectory=window, num_inference_steps=1, output_type="latent")
    assert (
        run(pipe, trajectory=window, num_inference_steps=2, output_type="latent")
        .latents.isfinite()
        .all()
    )
