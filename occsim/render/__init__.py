"""Renderers: a fast numpy bird's-eye view (open3d views are imported lazily where used)."""

from occsim.render.bev import render_bev, top_visible

__all__ = ["render_bev", "top_visible"]
