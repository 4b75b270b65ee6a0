"""Gymnasium environments of occsim, imported as ``occsim.envs``."""
