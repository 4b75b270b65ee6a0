"""Non-overlapping (kernel = stride) 3D patch layers as matrix products.

A convolution whose kernel equals its stride is a reshape plus a linear map; written that
way it runs several times faster on CPU than ``Conv3d``/``ConvTranspose3d`` and is causal
in time by construction (each output frame sees only its own input frames).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class PatchMerge3d(nn.Module):
    """``(B, C, T, H, W) -> (B, C', T/pt, H/ph, W/pw)``: a strided conv with kernel = stride."""

    def __init__(self, in_channels: int, out_channels: int, patch: tuple[int, int, int]) -> None:
        super().__init__()
        self.patch = tuple(patch)
        self.linear = nn.Linear(
            in_channels * self.patch[0] * self.patch[1] * self.patch[2], out_channels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pt, ph, pw = self.patch
        if x.shape[2] % pt or x.shape[3] % ph or x.shape[4] % pw:
            raise ValueError(f"shape {tuple(x.shape[2:])} is not divisible by patch {self.patch}")
        patches = rearrange(x, "b c (t i) (h j) (w k) -> b t h w (c i j k)", i=pt, j=ph, k=pw)
        return rearrange(self.linear(patches), "b t h w c -> b c t h w")


class PatchSplit3d(nn.Module):
    """``(B, C, T, H, W) -> (B, C', T*pt, H*ph, W*pw)``: a transposed conv with kernel = stride."""

    def __init__(self, in_channels: int, out_channels: int, patch: tuple[int, int, int]) -> None:
        super().__init__()
        self.patch = tuple(patch)
        self.out_channels = out_channels
        self.linear = nn.Linear(
            in_channels, out_channels * self.patch[0] * self.patch[1] * self.patch[2]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pt, ph, pw = self.patch
        out = self.linear(rearrange(x, "b c t h w -> b t h w c"))
        return rearrange(out, "b t h w (c i j k) -> b c (t i) (h j) (w k)", i=pt, j=ph, k=pw)


class ClassPatchEmbed(nn.Module):
    """Class embedding, height folded into channels, and a patchifying linear map, fused.

    Embedding every voxel (c' floats each) and then patchifying is linear in the one-hot
    classes, so the composition is a table of ``patch * Z * classes`` vectors summed per
    patch: ``embedding_bag`` computes it without ever materialising the embedded volume.
    """

    def __init__(
        self, embed_dim: int, height: int, out_channels: int, patch: tuple[int, int, int]
    ) -> None:
        super().__init__()
        self.patch, self.height = tuple(patch), height
        pt, ph, pw = self.patch
        self.weight = nn.Parameter(torch.empty(out_channels, pt, ph, pw, height, embed_dim))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.kaiming_uniform_(self.weight.view(out_channels, -1), a=5**0.5)
        fan_in = pt * ph * pw * height * embed_dim
        nn.init.uniform_(self.bias, -(fan_in**-0.5), fan_in**-0.5)

    def forward(self, occupancy: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """Occupancy ids ``(B, T, X, Y, Z)`` -> features ``(B, C, T/pt, X/ph, Y/pw)``.

        ``class_embeddings`` ``(classes, c')`` is passed in, as the head shares it.
        """
        pt, ph, pw = self.patch
        # table[(i, j, k, z), class] = W[:, i, j, k, z, :] @ E[class]
        table = torch.einsum("oijkzc,nc->ijkzno", self.weight, class_embeddings)
        table = table.reshape(-1, *table.shape[-2:])
        b, t, x, y, _ = occupancy.shape
        # Regroup the (small) integer ids before widening them: permuting a strided int64
        # volume costs several times more than this whole layer.
        ids = rearrange(occupancy, "b (t i) (x j) (y k) z -> (b t x y) (i j k z)", i=pt, j=ph, k=pw)
        features = PatchClassSum.apply(ids.contiguous(), table) + self.bias
        return rearrange(features, "(b t x y) c -> b c t x y", b=b, t=t // pt, x=x // ph, y=y // pw)


class PatchClassSum(torch.autograd.Function):
    """``out[n] = sum_p table[p, ids[n, p]]`` for class ids ``(N, P)`` and a table
    ``(P, classes, C)``: ``embedding_bag`` forward, and a backward by class masks.

    ``embedding_bag``'s own backward sorts all N*P indices (millions per batch) and took a
    third of a tokenizer training step; with few classes, ``grad_table[:, k] =
    (ids == k)^T @ grad_out`` is one matrix product per class present, about 4x faster.
    """

    @staticmethod
    def forward(ctx, ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        positions, num_classes, channels = table.shape
        offsets = torch.arange(
            0, positions * num_classes, num_classes, dtype=torch.int32, device=ids.device
        )
        ctx.save_for_backward(ids)
        ctx.num_classes = num_classes
        return F.embedding_bag(ids + offsets, table.reshape(-1, channels), mode="sum")

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[None, torch.Tensor]:
        (ids,) = ctx.saved_tensors
        grad_transposed = grad_out.t().contiguous()  # (C, N)
        grad_table = grad_out.new_zeros(ids.shape[1], ctx.num_classes, grad_out.shape[1])
        for k in range(ctx.num_classes):
            mask = ids == k
            if mask.any():
                grad_table[:, k] = (grad_transposed @ mask.to(grad_out.dtype)).t()
        return None, grad_table


class ClassPatchHead(nn.Module):
    """Features ``(B, C, t, h, w)`` -> per-voxel class logits ``(B, T, X, Y, Z, classes)``.

    The transposed patch map to ``c'`` features per voxel is fused with the product by the
    (tied) class embeddings, so logits come out of one matrix product.
    """

    def __init__(
        self,
        in_channels: int,
        embed_dim: int,
        num_classes: int,
        height: int,
        patch: tuple[int, int, int],
    ) -> None:
        super().__init__()
        self.patch, self.height = tuple(patch), height
        pt, ph, pw = self.patch
        self.weight = nn.Parameter(torch.empty(pt, ph, pw, height, embed_dim, in_channels))
        nn.init.kaiming_uniform_(self.weight.view(-1, in_channels), a=5**0.5)
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def fused_weight(self, class_embeddings: torch.Tensor) -> torch.Tensor:
        """``(C, pt*ph*pw*Z*classes)``: patch map times class embeddings."""
        fused = torch.einsum("ijkzcd,nc->dijkzn", self.weight, class_embeddings)
        return fused.reshape(self.weight.shape[-1], -1)

    def _patch_logits(self, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Logits per latent position, ``(B, t, x, y, pt*ph*pw*Z, classes)``, contiguous."""
        logits = rearrange(h, "b c t x y -> b t x y c") @ weight
        logits = logits.view(*logits.shape[:-1], -1, self.bias.shape[0])
        return logits + self.bias

    def _unpatch(self, values: torch.Tensor) -> torch.Tensor:
        pt, ph, pw = self.patch
        return rearrange(
            values,
            "b t x y (i j k z) ... -> b (t i) (x j) (y k) z ...",
            i=pt,
            j=ph,
            k=pw,
            z=self.height,
        )

    def forward(self, h: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        return self._unpatch(self._patch_logits(h, self.fused_weight(class_embeddings)))

    def patch_targets(self, occupancy: torch.Tensor) -> torch.Tensor:
        """Class ids ``(B, T, X, Y, Z)`` grouped like the head's patches:
        ``(B, t, x, y, pt*ph*pw*Z)``."""
        pt, ph, pw = self.patch
        return rearrange(occupancy, "b (t i) (x j) (y k) z -> b t x y (i j k z)", i=pt, j=ph, k=pw)

    def sampled_logits(
        self, h: torch.Tensor, class_embeddings: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``(M, pt*ph*pw*Z, classes)`` of the patches at flat ``positions`` of
        ``(B, t, x, y)``: training supervises a subset without computing every voxel."""
        features = rearrange(h, "b c t x y -> (b t x y) c")[positions]
        logits = features @ self.fused_weight(class_embeddings)
        voxels = self.patch[0] * self.patch[1] * self.patch[2] * self.height
        return logits.view(len(positions), voxels, self.bias.shape[0]) + self.bias

    @torch.no_grad()
    def classes(
        self,
        h: torch.Tensor,
        class_embeddings: torch.Tensor,
        free_class: int | None = None,
        voxels_per_chunk: int = 51_200,
        cells: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Arg-max classes ``(B, T, X, Y, Z)`` uint8, equal to ``forward(...).argmax(-1)``.

        Logits are computed about ``voxels_per_chunk`` voxels at a time (whole head
        patches), so the full volume (18 floats per voxel) is never held, and each chunk
        stays in cache from the product to the arg-max. When ``free_class`` is the last
        class (Occ3D's ``free``), the chunk is laid out class-major and a voxel is free
        wherever that logit beats the (vectorised) maximum of all the others; the full
        arg-max, whose CPU kernel is slow over 18 values, then runs only on the occupied
        voxels, about a tenth of a driving scene. With ``cells`` (bool ``(B, t, x, y)``,
        one per head patch) only those patches are decoded; the others come out
        ``free_class`` (class 0 without one).
        """
        weight = self.fused_weight(class_embeddings)
        num_classes = self.bias.shape[0]
        voxels = weight.shape[1] // num_classes
        cells_per_chunk = max(1, voxels_per_chunk // voxels)
        features = rearrange(h, "b c t x y -> b t x y c").contiguous()
        flat = features.view(-1, features.shape[-1])
        out = torch.empty(*features.shape[:-1], voxels, dtype=torch.uint8, device=h.device)
        out_flat = out.view(-1, voxels)
        if cells is None:
            rows = None
            count = len(flat)
        else:
            if cells.shape != features.shape[:-1]:
                raise ValueError(
                    f"cells must have shape {tuple(features.shape[:-1])}, got {tuple(cells.shape)}"
                )
            rows = cells.reshape(-1).nonzero().squeeze(1)
            count = len(rows)
        fused_free = free_class is not None and free_class == num_classes - 1
        out_flat.fill_(free_class if free_class is not None else 0)
        if fused_free:
            weight = rearrange(weight, "c (v n) -> c (n v)", n=num_classes).contiguous()
            bias = self.bias.repeat_interleave(voxels)
        else:
            bias = self.bias.repeat(voxels)
        for start in range(0, count, cells_per_chunk):
            if rows is None:
                chunk_rows = slice(start, start + cells_per_chunk)
            else:
                chunk_rows = rows[start : start + cells_per_chunk]
            logits = torch.addmm(bias, flat[chunk_rows], weight)
            if not fused_free:
                classes = logits.view(len(logits), voxels, num_classes).max(-1).indices
                out_flat[chunk_rows] = classes.to(torch.uint8)
                continue
            logits = logits.view(len(logits), num_classes, voxels)
            # Ties go to the lower class id, as in argmax: free (last) must win outright.
            occupied = logits[:, free_class] <= logits[:, :free_class].amax(dim=1)
            classes = logits.transpose(1, 2)[occupied].max(-1).indices.to(torch.uint8)
            if rows is None:  # a view of the output: written in place
                out_flat[chunk_rows][occupied] = classes
            else:
                chunk = torch.full_like(occupied, free_class, dtype=torch.uint8)
                chunk[occupied] = classes
                out_flat[chunk_rows] = chunk
        return self._unpatch(out)
