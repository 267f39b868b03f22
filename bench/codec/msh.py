"""The MSH codec on tensors: encode images to containers, decode the latent ``y_hat`` and synthesise.

compressai's ``MeanScaleHyperprior.decompress`` returns only the reconstruction; the diffusion
decoder needs the decoded latent itself, so :func:`decode_latent` repeats the decoder's steps
(z strings → ``z_hat`` → ``h_s`` → indexes and means → y strings → ``y_hat``) and stops there.

Bit-exactness: the decoder recomputes the Gaussian parameters from ``z_hat``; if the encoder's
values differed in the last bit, an index could change and the y strings would decode to garbage.
CPU convolutions are not batch-size invariant (a batch of 3 and three batches of 1 differ by an
ulp), so :func:`_entropy_parameters` always runs ``h_s`` one image at a time, in the encoder, the
decoder and :func:`training_latent` alike. Encoding and decoding on different kinds of device is
not supported (compressai has the same limitation).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from compressai.models import MeanScaleHyperprior
from compressai.ops import compute_padding
from torch import Tensor

from bench.codec.bitstream import Bitstream, pack, size_problem, unpack
from bench.codec.checkpoints import ARCH, check_quality, load_checkpoint, load_pretrained
from bench.images import shape_batches
from bench.utils import BenchError, resolve_device, state_dict_hash

Padding = tuple[int, int, int, int]  # left, right, top, bottom (F.pad order)
PAD_MULTIPLE = 64  # g_a downsamples by 16 and h_a by 4 more
# Decoded z symbols beyond this cannot come from a real latent and are not re-encoded exactly in
# float32 (compressai's encoder even loops forever on |symbol| >= 2**30): such a decode is garbage.
_MAX_Z_SYMBOL = 2**22


@dataclass(frozen=True, eq=False)
class MSHCodec:
    """A compressai mbt2018-mean model in eval mode with the identity it writes into bitstreams."""

    net: MeanScaleHyperprior
    quality: int
    weights_hash: str
    device: torch.device

    @classmethod
    def from_net(cls, net: MeanScaleHyperprior, quality: int, device: str | torch.device = "auto") -> MSHCodec:
        """Wrap ``net``: fill its entropy-coder tables if it has none, move it, hash its weights."""
        device = resolve_device(device) if isinstance(device, str) else device
        net.update()  # a no-op for models saved after update(); needed for raw training checkpoints
        net = net.to(device).eval()
        return cls(net, check_quality(quality), state_dict_hash(net.state_dict()), device)


@dataclass(frozen=True, eq=False)
class DecodedLatent:
    """The decoded latent of one image at padded size, with what is needed to undo the padding."""

    y_hat: Tensor  # [1, M, Hp/16, Wp/16]
    height: int
    width: int
    padding: Padding
    header: Bitstream


def load_codec(
    quality: int,
    *,
    checkpoint: str | os.PathLike | None = None,
    pretrained: bool = False,
    device: str | torch.device = "auto",
) -> MSHCodec:
    """The MSH codec at ``quality`` from a checkpoint file or compressai's pretrained zoo weights."""
    check_quality(quality)
    if (checkpoint is None) == (not pretrained):
        raise BenchError("give exactly one MSH weights source: a checkpoint path (--checkpoint) or --pretrained")
    net = load_pretrained(quality) if pretrained else load_checkpoint(checkpoint, quality)[0]
    return MSHCodec.from_net(net, quality, device)


def pad(x: Tensor) -> tuple[Tensor, Padding]:
    """Zero-pad ``x`` [B,3,H,W] to multiples of 64, centred (compressai's ``compute_padding``)."""
    padding, _ = compute_padding(x.size(-2), x.size(-1), min_div=PAD_MULTIPLE)
    return F.pad(x, padding, mode="constant", value=0.0), padding


def unpad(x: Tensor, padding: Padding) -> Tensor:
    """Undo :func:`pad` (negative padding crops)."""
    return F.pad(x, tuple(-p for p in padding))


def padded_size(height: int, width: int) -> tuple[int, int]:
    """Height and width after :func:`pad`."""
    return -(-height // PAD_MULTIPLE) * PAD_MULTIPLE, -(-width // PAD_MULTIPLE) * PAD_MULTIPLE


def _check_images(x: Tensor) -> None:
    if x.ndim != 4 or x.size(1) != 3:
        raise BenchError(f"expected images as a [B, 3, H, W] tensor, got shape {tuple(x.shape)}")


def _entropy_parameters(net: MeanScaleHyperprior, z_hat: Tensor) -> tuple[Tensor, Tensor]:
    """Scales and means of the Gaussian conditional from ``h_s(z_hat)``, one image at a time.

    Per-image so that the result does not depend on the batch it was computed in (see the module
    docstring): encoder and decoder must agree to the last bit.
    """
    params = torch.cat([net.h_s(z_hat[i : i + 1]) for i in range(z_hat.size(0))])
    scales, means = params.chunk(2, 1)
    return scales, means


def _analyse(net: MeanScaleHyperprior, x_padded: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """g_a, h_a, quantised z (around the bottleneck medians) and the Gaussian parameters of y."""
    y = net.g_a(x_padded)
    z = net.h_a(y)
    z_hat, _ = net.entropy_bottleneck(z, training=False)
    scales, means = _entropy_parameters(net, z_hat)
    return y, z, z_hat, scales, means


@torch.no_grad()
def encode(codec: MSHCodec, x: Tensor) -> list[bytes]:
    """Compress images ``x`` [B,3,H,W] in [0,1] into one container per image."""
    _check_images(x)
    height, width = x.shape[-2:]
    if problem := size_problem(height, width):
        raise BenchError(f"cannot encode a {width}x{height} image: {problem}")
    net = codec.net
    y, z, _, scales, means = _analyse(net, pad(x.to(codec.device))[0])
    z_strings = net.entropy_bottleneck.compress(z)
    indexes = net.gaussian_conditional.build_indexes(scales)
    y_strings = net.gaussian_conditional.compress(y, indexes, means=means)
    return [
        pack(Bitstream(ARCH, codec.quality, codec.weights_hash, height, width, (y_s,), (z_s,)))
        for y_s, z_s in zip(y_strings, z_strings, strict=True)
    ]


def check_stream(codec: MSHCodec, stream: Bitstream, *, source: str = "bitstream") -> None:
    """Raise a BenchError unless ``codec`` is the model that wrote ``stream``."""
    if stream.codec != ARCH or len(stream.y_strings) != 1 or len(stream.z_strings) != 1:
        raise BenchError(
            f"{source} is a {stream.codec!r} stream with {len(stream.y_strings)} y and {len(stream.z_strings)} z "
            f"strings; the MSH codec reads {ARCH!r} streams with one of each"
        )
    if stream.weights_hash != codec.weights_hash:
        raise BenchError(
            f"{source} was encoded by weights {stream.weights_hash} (quality {stream.quality}), but the loaded "
            f"MSH codec has weights {codec.weights_hash} (quality {codec.quality}); decode with the checkpoint "
            "(or --pretrained) that encoded it"
        )


def _decode_z(net: MeanScaleHyperprior, stream: Bitstream, z_shape: tuple[int, int], source: str) -> Tensor:
    """``z_hat`` at the size the header implies, refused unless the z string codes exactly that latent.

    rANS strings carry no symbol count, so a header whose size was changed (CRC recomputed) would
    decode to a latent of the wrong size and an image of the header's size. The check: re-encoding
    the decoded ``z_hat`` must give back the very string (a string decoded with too few or too many
    symbols does not). compressai's decoder reads past the end of a string asked for more symbols
    than it holds, so zeros are appended for it to read instead of foreign memory (8 bytes per
    symbol: a decode step reads at most one 32-bit word, and zeros form no escape code that would
    add steps). Sizes that agree on the padded latent (the same multiple of 64) are not
    distinguishable from the strings; the CRC is what guards those.
    """
    (z_string,) = stream.z_strings
    bottleneck = net.entropy_bottleneck
    count = bottleneck.channels * z_shape[0] * z_shape[1]
    z_hat = bottleneck.decompress([z_string + bytes(8 * count + 4096)], z_shape)
    if z_hat.abs().amax() >= _MAX_Z_SYMBOL or bottleneck.compress(z_hat) != [z_string]:
        raise BenchError(
            f"{source} is inconsistent: its header says width {stream.width}, height {stream.height}, but its z "
            "string does not code a latent of that size (the header was altered); encode the image again"
        )
    return z_hat


def _verified_z(codec: MSHCodec, data: bytes, source: str) -> tuple[Bitstream, Tensor]:
    """The parsed container and its ``z_hat``, after every check (container, weights, size vs strings)."""
    stream = unpack(data, source=source)
    check_stream(codec, stream, source=source)
    padded_h, padded_w = padded_size(stream.height, stream.width)
    return stream, _decode_z(codec.net, stream, (padded_h // PAD_MULTIPLE, padded_w // PAD_MULTIPLE), source)


@torch.no_grad()
def verify_stream(codec: MSHCodec, data: bytes, *, source: str = "bitstream") -> None:
    """Every check :func:`decode_latent` makes, without decoding the y strings (cheap: for checking a
    whole folder before the first output is written)."""
    _verified_z(codec, data, source)


@torch.no_grad()
def decode_latent(codec: MSHCodec, data: bytes, *, source: str = "bitstream") -> DecodedLatent:
    """Entropy-decode one container into ``y_hat`` exactly as the MSH decoder sees it."""
    stream, z_hat = _verified_z(codec, data, source)
    net = codec.net
    scales, means = _entropy_parameters(net, z_hat)
    indexes = net.gaussian_conditional.build_indexes(scales)
    y_hat = net.gaussian_conditional.decompress(list(stream.y_strings), indexes, means=means)
    padding, _ = compute_padding(stream.height, stream.width, min_div=PAD_MULTIPLE)
    return DecodedLatent(y_hat, stream.height, stream.width, padding, stream)


@torch.no_grad()
def synthesize_batch(codec: MSHCodec, latents: list[DecodedLatent], *, padded: bool = False) -> list[Tensor]:
    """MSH reconstructions ``g_s(y_hat)`` clamped to [0,1], one [1,3,H,W] tensor per latent.

    Latents of the same size go through ``g_s`` together (one batch per size).
    """
    outputs: dict[int, Tensor] = {}
    for indices in shape_batches([tuple(latent.y_hat.shape) for latent in latents]):
        y_hat = torch.cat([latents[i].y_hat for i in indices]).to(codec.device)
        x_hat = codec.net.g_s(y_hat).clamp_(0, 1)
        for i, image in zip(indices, x_hat.split(1), strict=True):
            outputs[i] = image if padded else unpad(image, latents[i].padding)
    return [outputs[i] for i in range(len(latents))]


def synthesize(codec: MSHCodec, latent: DecodedLatent, *, padded: bool = False) -> Tensor:
    """The MSH reconstruction [1,3,H,W] of one decoded latent (padded size when ``padded``)."""
    return synthesize_batch(codec, [latent], padded=padded)[0]


@torch.no_grad()
def training_latent(codec: MSHCodec, x: Tensor) -> Tensor:
    """The ``y_hat`` that ``decode_latent(codec, encode(codec, x)[i])`` would return, for a batch.

    Same padding, same quantisation (z around the bottleneck medians, y around the hyperprior
    means) and the same per-image ``h_s``, without running the entropy coder: for training the
    diffusion decoder on crops. Returns [B, M, Hp/16, Wp/16].
    """
    _check_images(x)
    y, _, _, _, means = _analyse(codec.net, pad(x.to(codec.device))[0])
    return codec.net.gaussian_conditional.quantize(y, "dequantize", means)
