"""The 4D occupancy scene tokenizer (OccSora section 3.2)."""

from occsim.tokenizer.layers import StreamCache
from occsim.tokenizer.losses import (
    inverse_sqrt_frequency_weights,
    lovasz_softmax,
    reconstruction_losses,
    tokenizer_losses,
)
from occsim.tokenizer.model import (
    TOKENIZER_PRESETS,
    OccTokenizer,
    TokenizerEncoding,
    TokenizerOutput,
)
from occsim.tokenizer.quantizer import QuantizerOutput, VectorQuantizer

__all__ = [
    "TOKENIZER_PRESETS",
    "OccTokenizer",
    "QuantizerOutput",
    "StreamCache",
    "TokenizerEncoding",
    "TokenizerOutput",
    "VectorQuantizer",
    "inverse_sqrt_frequency_weights",
    "lovasz_softmax",
    "reconstruction_losses",
    "tokenizer_losses",
]
