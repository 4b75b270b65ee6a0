"""The learned world's default sampler: DDIM, one solver step from the last training
timestep ("trailing" spacing), no classifier-free guidance.

The DiT predicts the clean latent on top of a strong prior (the memory's ground, the warped
context), so one pass from pure noise at t=999 already gives its prediction: the one-pass
clean-latent mode. Chosen at the knee of ``occsim eval sweep`` on the bundled model
(BENCHMARKS.md): as high a closed-loop mIoU (overall, seen and new space) as 2, 4 or 10
steps, no learned-only termination, at a quarter of the DiT passes of 4 steps.

``timestep_spacing`` is the diffusers schedulers' choice of the solver steps' timesteps:
``"leading"`` (diffusers' default, and the bundled scheduler's until the sweep chose
trailing) starts a 4-step DDIM at t=750 and a 1-step one at t=0, where the DiT is told that
pure noise is almost clean; ``"trailing"`` starts at t=999 whatever the number of steps
(Lin et al., 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed").
"""

DEFAULT_SOLVER_STEPS: int = 1
DEFAULT_GUIDANCE_SCALE: float = 1.0  # 1 is off: the conditional pass alone
DEFAULT_TIMESTEP_SPACING: str = "trailing"
TIMESTEP_SPACINGS: tuple[str, ...] = ("leading", "trailing", "linspace")
