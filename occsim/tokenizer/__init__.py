"""The 4D occupancy scene tokenizer (OccSora section 3.2)."""

from occsim.tokenizer.layers import StreamCache
from occsim.tokenizer.losses import lovasz_softmax, reconstruction_losses, tokenizer_losses
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
    "lovasz_softmax",
    "reconstruction_losses",
    "tokenizer_losses",
]
