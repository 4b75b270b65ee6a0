"""Agents that act in occsim environments, imported as ``occsim.agents``."""
