import pytest
import torch
from einops import rearrange, repeat

from occsim.labels import FREE
from occsim.tokenizer import OccTokenizer, StreamCache, lovasz_softmax, tokenizer_losses

SMALL_GRID = (40, 40, 16)
OVERFIT_STEPS, OVERFIT_LR = 200, 3e-3


def tiny(**overrides) -> OccTokenizer:
    torch.manual_seed(0)
    return OccTokenizer.from_preset("tiny", grid_size=SMALL_GRID, **overrides).eval()


def random_occupancy(frames: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 18, (batch, frames, *SMALL_GRID), generator=generator)


def test_shapes_for_any_batch():
    model = tiny()
    for batch in (1, 3):
        occupancy = random_occupancy(4, batch)
        encoding = model.encode(occupancy)
        assert encoding.latents.shape == (batch, 8, 2, 10, 10) == (batch, *model.latent_shape(4))
        assert encoding.indices.shape == (batch, 2, 2, 10, 10)
        logits = model.decode(encoding.latents)
        assert logits.shape == (batch, 4, *SMALL_GRID, 18)
        reconstruction = model.reconstruct(occupancy)
        assert reconstruction.dtype == torch.uint8
        assert torch.equal(reconstruction, logits.argmax(-1).to(torch.uint8))


def test_encoding_unrelated_clips_a_few_a_call_gives_the_batch_encoding():
    model = tiny()
    occupancy = random_occupancy(4, batch=5, seed=3)
    whole = model.encode(occupancy)
    clips = model.encode_clips(occupancy)  # 2 + 2 + 1 clips a call on the CPU
    assert clips.latents.shape == whole.latents.shape
    # Float rounding differs with the batch; a code flips only at a near-tie.
    assert (clips.indices == whole.indices).float().mean() >= 0.99
    assert torch.equal(clips.latents, model.quantizer.lookup(clips.indices))  # its own codes


def test_decode_indices_equals_decode_latents():
    model = tiny()
    encoding = model.encode(random_occupancy(4))
    assert torch.equal(model.decode_indices(encoding.indices), model.decode(encoding.latents))


def test_decode_classes_is_the_argmax_of_the_logits():
    model = tiny()
    with torch.no_grad():  # make free the most common class, as in driving scenes
        model.head.bias[FREE] += 1.0
    latents = model.encode(random_occupancy(4, batch=2)).latents
    expected = model.decode(latents).argmax(-1).to(torch.uint8)
    assert 0.3 < (expected == FREE).float().mean() < 0.9
    features = model._decode_features(latents, None)
    for free_class in (None, FREE):
        for voxels in (1, 7 * 64, 400 * 64, 10**7):  # chunks that split rows, frames, batches
            classes = model.head.classes(
                features, model.class_embedding.weight, free_class, voxels_per_chunk=voxels
            )
            assert torch.equal(classes, expected), (free_class, voxels)
    assert torch.equal(model.decode_classes(latents), expected)


def test_decode_classes_of_wanted_voxels_decodes_their_patches_only():
    model = tiny()
    with torch.no_grad():
        model.head.bias[FREE] += 1.0
    latents = model.encode(random_occupancy(4, batch=2)).latents
    expected = model.decode(latents).argmax(-1).to(torch.uint8)
    wanted = torch.zeros(2, 4, *SMALL_GRID, dtype=torch.bool)
    wanted[0, 1, 5, 6, 3] = True  # one voxel: its whole head patch is decoded
    wanted[1, :, 20:, :] = True  # half of every frame of the second clip
    cells = model.head.patch_targets(wanted).any(-1)
    pt, ph, pw = model.head.patch
    patch = repeat(cells, "b t x y -> b (t i) (x j) (y k) z", i=pt, j=ph, k=pw, z=SMALL_GRID[2])
    # Clip 0: the one patch (pt x ph x pw columns x the height) holding the wanted voxel.
    assert int(patch[0].sum()) == pt * ph * pw * SMALL_GRID[2] and patch[0, 1, 5, 6, 3]
    assert torch.equal(patch[1], wanted[1])  # whole patches already
    for free_class in (None, FREE):
        features = model._decode_features(latents, None)
        classes = model.head.classes(
            features,
            model.class_embedding.weight,
            free_class,
            voxels_per_chunk=7 * 64,
            cells=cells,
        )
        fill = 0 if free_class is None else FREE
        assert torch.equal(classes[patch], expected[patch])
        assert bool((classes[~patch] == fill).all())
    assert torch.equal(model.decode_classes(latents, wanted=wanted)[patch], expected[patch])
    with pytest.raises(ValueError, match="cells must have shape"):
        model.head.classes(features, model.class_embedding.weight, cells=torch.ones(3, dtype=bool))


def test_decode_classes_breaks_ties_like_argmax():
    model = tiny()
    with torch.no_grad():  # every logit equal: argmax takes the first class, never free
        model.head.weight.zero_()
        model.head.bias.zero_()
    latents = model.encode(random_occupancy(4)).latents
    assert int(model.decode_classes(latents).max()) == 0


def test_class_patch_embedding_matches_embedding_then_patchify_with_gradients():
    model = tiny()
    stem, embeddings = model.stem, model.class_embedding.weight
    occupancy = random_occupancy(4, batch=2).to(torch.uint8)
    grad_out = torch.randn(2, 8, 4, 10, 10, generator=torch.Generator().manual_seed(1))
    fused = stem(occupancy, embeddings)
    fused_grads = torch.autograd.grad((fused * grad_out).sum(), (stem.weight, embeddings))
    # The unfused reference: embed every voxel, fold the height in, patchify.
    voxels = embeddings[occupancy.long()]  # (B, T, X, Y, Z, c')
    patches = rearrange(voxels, "b t (x j) (y k) z c -> b t x y j k z c", j=4, k=4)
    reference = torch.einsum("btxyjkzc,oijkzc->botxy", patches, stem.weight)
    reference = reference + stem.bias[:, None, None, None]
    reference_grads = torch.autograd.grad((reference * grad_out).sum(), (stem.weight, embeddings))
    torch.testing.assert_close(fused, reference, atol=1e-4, rtol=1e-4)
    for got, expected in zip(fused_grads, reference_grads, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-4)


def test_snap_replaces_latents_by_their_nearest_codes():
    model = tiny()
    encoding = model.encode(random_occupancy(4))
    # Encoder outputs are already codes; a small perturbation snaps back to them.
    assert torch.equal(model.quantizer.snap(encoding.latents), encoding.latents)
    noisy = encoding.latents + 1e-3 * torch.randn(encoding.latents.shape)
    assert torch.equal(model.quantizer.snap(noisy), encoding.latents)
    codes = model.quantizer.embedding
    far = model.quantizer.snap(torch.randn(1, 8, 1, 2, 2) * 5.0)
    vectors = rearrange(far, "b (g d) t h w -> (b t h w g) d", g=model.quantizer.groups)
    assert all((codes == v).all(dim=1).any() for v in vectors)


def test_save_and_load_round_trip(tmp_path):
    model = tiny()
    occupancy = random_occupancy(4)
    model.save_pretrained(tmp_path / "tok")
    loaded = OccTokenizer.from_pretrained(tmp_path / "tok").eval()
    assert (tmp_path / "tok" / "config.json").exists()
    assert list((tmp_path / "tok").glob("*.safetensors"))
    assert torch.equal(model.encode(occupancy).indices, loaded.encode(occupancy).indices)
    assert torch.equal(
        model.decode(model.encode(occupancy).latents),
        loaded.decode(loaded.encode(occupancy).latents),
    )


@pytest.mark.parametrize("head_upsample", [(1, 1, 1), (1, 2, 2)])
def test_head_level_is_built_and_run_from_the_config(tmp_path, head_upsample):
    model = tiny(head_upsample=head_upsample)
    level = head_upsample != (1, 1, 1)
    head_level = {"head_split", "head_block"}
    names = {key.split(".")[0] for key in model.state_dict()}
    assert names & head_level == (head_level if level else set())
    assert model.head.patch == ((1, 2, 2) if level else (1, 4, 4))
    latents = model.encode(random_occupancy(4)).latents
    features = model._decode_features(latents, None)
    assert features.shape[-2:] == ((20, 20) if level else (10, 10))
    # Loaded, the config holds lists: the same choice, the same outputs.
    model.save_pretrained(tmp_path / "tok")
    loaded = OccTokenizer.from_pretrained(tmp_path / "tok").eval()
    assert tuple(loaded.config.head_upsample) == head_upsample
    assert torch.equal(loaded.decode(latents), model.decode(latents))


def test_bundled_tokenizer_config_has_no_head_level():
    from occsim.assets import asset_path

    # Saved before head_upsample existed: the default (none) applies.
    model = OccTokenizer.from_pretrained(asset_path("default_model", "tokenizer"))
    assert tuple(model.config.head_upsample) == (1, 1, 1)
    assert not any(key.startswith(("head_split.", "head_block.")) for key in model.state_dict())
    assert model.head.patch == (1, 4, 4)


def test_chunked_streaming_equals_whole_clip():
    model = tiny()
    occupancy = random_occupancy(8)
    with torch.no_grad():
        whole = model.encode(occupancy)
        whole_logits = model.decode(whole.latents)
        cache_enc, cache_dec = StreamCache(), StreamCache()
        latents, logits = [], []
        for start in (0, 2, 4, 6):  # chunks of one temporal factor (2 frames)
            part = model.encode(occupancy[:, start : start + 2], cache_enc)
            latents.append(part.latents)
            logits.append(model.decode(part.latents, cache_dec))
    assert torch.allclose(torch.cat(latents, dim=2), whole.latents, atol=1e-5)
    assert torch.allclose(torch.cat(logits, dim=1), whole_logits, atol=1e-4)
    assert len(cache_enc) > 0 and len(cache_dec) > 0


def test_paper_preset_on_meta_device():
    with torch.device("meta"):
        model = OccTokenizer.from_preset("paper")
    assert model.latent_shape(32) == (128, 4, 25, 25)
    assert model.temporal_factor == 8 and model.spatial_factor == (8, 8)
    assert sum(p.numel() for p in model.parameters()) == 82_812_834


def test_default_preset_shapes():
    with torch.device("meta"):
        model = OccTokenizer.from_preset("default")
        fine = OccTokenizer.from_preset("default_fine")
    assert model.latent_shape(4) == fine.latent_shape(4) == (32, 1, 50, 50)
    assert fine.quantizer.groups == 8 and fine.quantizer.codebook_size == 512
    assert fine.head.patch == (1, 2, 2)  # a decoder-only 100x100 level feeds the head
    assert sum(p.numel() for p in fine.parameters()) == 635_394


def test_bad_input_is_rejected_with_a_clear_message():
    model = tiny()
    with pytest.raises(ValueError, match=r"class ids in \[18, 18\], expected 0..17"):
        model.encode(torch.full((1, 2, *SMALL_GRID), 18))
    with pytest.raises(ValueError, match=r"shape \(B, T, X, Y, Z\)"):
        model.encode(torch.zeros(2, *SMALL_GRID, dtype=torch.long))
    with pytest.raises(ValueError, match="multiple of the temporal factor 2"):
        model.encode(torch.zeros(1, 3, *SMALL_GRID, dtype=torch.long))
    with pytest.raises(TypeError, match="integer class ids"):
        model.encode(torch.zeros(1, 2, *SMALL_GRID))
    with pytest.raises(ValueError, match="frames must be"):
        model.encode(torch.zeros(1, 2, 20, 20, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="code indices must lie"):
        model.decode_indices(torch.full((1, 2, 1, 10, 10), 64))
    with pytest.raises(ValueError, match="unknown tokenizer preset"):
        OccTokenizer.from_preset("huge")
    with pytest.raises(ValueError, match=r"head_upsample \(1, 3, 3\) must divide the stem"):
        OccTokenizer.from_preset("tiny", head_upsample=(1, 3, 3))


def test_lovasz_is_zero_for_perfect_and_positive_otherwise():
    labels = torch.tensor([0, 1, 2, 2])
    perfect = torch.nn.functional.one_hot(labels, 3).float()
    assert lovasz_softmax(perfect, labels).item() == pytest.approx(0.0)
    uniform = torch.full((4, 3), 1 / 3)
    assert lovasz_softmax(uniform, labels).item() > 0.3


def test_codebook_stays_alive_and_losses_are_reported():
    model = tiny()
    model.train()
    occupancy = random_occupancy(2, batch=2)
    output = model(occupancy)
    assert output.logits.shape == (occupancy.numel(), 18) and output.target.shape == (
        occupancy.numel(),
    )
    losses = tokenizer_losses(output)
    assert set(losses) == {"ce", "lovasz", "commitment", "total", "codebook"}
    assert torch.isfinite(losses["total"])
    losses["total"].backward()
    assert model.class_embedding.weight.grad is not None
    # Unused codes are restarted on encoder outputs once their EMA usage decays.
    quantizer = model.quantizer
    quantizer.cluster_size.fill_(0.0)
    model(occupancy)
    assert (quantizer.cluster_size >= 0.1).all()
    assert 0 < output.quantizer.usage <= 1 and output.quantizer.perplexity >= 1


def test_patch_sampling_keeps_rare_classes_and_matches_full_logits():
    model = tiny()
    occupancy = torch.full((1, 2, *SMALL_GRID), 17)
    occupancy[:, :, :, :, 2] = 11  # ground everywhere
    occupancy[0, :, 5, 7, 3] = 7  # one pedestrian voxel per frame
    generator = torch.Generator().manual_seed(0)
    sampled = model(occupancy, patch_fraction=0.0, generator=generator)
    # Only the head patches holding the pedestrian survive (one per frame): the tiny
    # preset's head predicts 2x2 columns, so 2 x (2*2*16) voxels.
    assert model.head.patch == (1, 2, 2)
    assert sampled.target.shape == (2 * 2 * 2 * 16,)
    assert (sampled.target == 7).sum() == 2
    # With every patch kept, the training logits are the decoder's, grouped by patch.
    full = model(occupancy)
    logits = model.decode(model.encode(occupancy).latents)
    grouped = rearrange(logits, "b (t i) (x j) (y k) z n -> (b t x y i j k z) n", i=1, j=2, k=2)
    assert torch.allclose(full.logits, grouped, atol=1e-5)
    assert torch.equal(
        full.target,
        rearrange(occupancy, "b (t i) (x j) (y k) z -> (b t x y i j k z)", i=1, j=2, k=2),
    )


def test_inverse_sqrt_frequency_weights():
    from occsim.tokenizer import inverse_sqrt_frequency_weights

    occupancy = torch.tensor([0] * 81 + [1] * 9 + [2] * 1 + [3] * 9)  # frequencies .81 .09 .01 .09
    weights = inverse_sqrt_frequency_weights(occupancy, 5, max_weight=100.0)
    # 1/sqrt(f), scaled so that the average voxel weighs 1 (sum of sqrt(f) = 1.6).
    expected = torch.tensor([1 / 0.9, 1 / 0.3, 1 / 0.1, 1 / 0.3]) / 1.6
    assert torch.allclose(weights[:4], expected, rtol=1e-5)
    counts = torch.bincount(occupancy, minlength=5).float()
    assert torch.isclose((counts * weights).sum() / counts.sum(), torch.tensor(1.0))
    assert weights[4] == 100.0  # absent: the cap
    assert inverse_sqrt_frequency_weights(occupancy, 5, max_weight=5.0).max() == 5.0


def test_default_tokenizer_learns_a_few_clips():
    """The default preset's architecture learns two procedural clips (a 64 x 48 crop of
    four frames each, so it runs in the default suite) from random weights to
    reconstruction mIoU >= 70 (Occ3D metric) in 200 steps: the model, losses and codebook
    can fit real scenes, rare classes included (mIoU 77 at 200 steps, 91 at 300, 13 at 50
    on this machine; below 20 untrained)."""
    import numpy as np

    from occsim.data import ProceduralClips
    from occsim.labels import NUM_CLASSES
    from occsim.metrics import OccupancyMetrics
    from occsim.procedural import WorldConfig
    from occsim.tokenizer import inverse_sqrt_frequency_weights

    torch.manual_seed(0)
    clips = ProceduralClips(2, clip_len=4, seed=3, config=WorldConfig(size=192.0, grid_nodes=3))
    crop = np.stack([clips[i]["occupancy"] for i in range(2)])[:, :, 68:132, 76:124]
    occupancy = torch.from_numpy(crop).long()
    model = OccTokenizer.from_preset("default", codebook_decay=0.9, grid_size=(64, 48, 16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=OVERFIT_LR)
    weights = inverse_sqrt_frequency_weights(occupancy, NUM_CLASSES)

    def miou() -> float:
        metrics = OccupancyMetrics()
        metrics.update(model.eval().reconstruct(occupancy).numpy(), crop)
        model.train()
        return metrics.compute().miou

    untrained = miou()
    for _ in range(OVERFIT_STEPS):
        losses = tokenizer_losses(model(occupancy, patch_fraction=0.25), weights)
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
    learned = miou()
    assert untrained < 20.0
    assert learned >= 70.0, f"reconstruction mIoU {learned:.1f} after {OVERFIT_STEPS} steps"


def test_nearest_code_is_the_first_of_equally_near_ones_as_argmin_gives():
    from occsim.tokenizer.quantizer import VectorQuantizer

    torch.manual_seed(0)
    quantizer = VectorQuantizer(codebook_size=64, dim=4)
    codes = quantizer.embedding
    codes[40] = codes[7]  # two equal codes: 7 must win
    rows = torch.randn(5000, 4)
    rows[:3] = codes[7]
    norms = codes.pow(2).sum(1)[None, :]
    torch_argmin = torch.cat(
        [torch.addmm(norms, r, codes.t(), alpha=-2.0).argmin(dim=1) for r in rows.split(1024)]
    )
    indices = quantizer.nearest(rows, rows_per_chunk=1024)
    assert indices.dtype == torch.int64 and torch.equal(indices, torch_argmin)
    assert indices[:3].tolist() == [7, 7, 7]
