"""rdp-bench: rate-distortion-perception benchmark of learned codecs with diffusion decoders."""

__version__ = "0.1.0"
