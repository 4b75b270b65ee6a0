"""The train module: ``occsim train tokenizer|dit`` (also ``python -m occsim.train``).

Scales from this machine to many GPUs with ``accelerate launch -m occsim.train ...``.
"""

from occsim.train.config import (
    DataConfig,
    DiTTrainConfig,
    OptimConfig,
    RunConfig,
    TokenizerTrainConfig,
    load_config,
)

__all__ = [
    "DataConfig",
    "DiTTrainConfig",
    "OptimConfig",
    "RunConfig",
    "TokenizerTrainConfig",
    "load_config",
]
