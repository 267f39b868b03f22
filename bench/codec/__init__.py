"""The MSH codec: compressai's mbt2018-mean (mean-scale hyperprior) with real bitstream files.

Public API (the diffusion decoder builds on :func:`decode_latent` and :func:`training_latent`)::

    codec = load_codec(quality, checkpoint=path)          # or pretrained=True (compressai zoo)
    blobs = encode(codec, x)                              # x [B,3,H,W] in [0,1] -> one container each
    latent = decode_latent(codec, blobs[0])               # y_hat [1,M,Hp/16,Wp/16] as decoded
    x_hat = synthesize(codec, latent)                     # MSH reconstruction [1,3,H,W]
    y_hat = training_latent(codec, crops)                 # the same y_hat without entropy coding
"""

from bench.codec.bitstream import Bitstream, pack, unpack
from bench.codec.files import (
    EncodeResult,
    bitstream_paths,
    codec_for_streams,
    decode_dir,
    decode_file,
    decode_path,
    encode_dir,
    encode_file,
    encode_path,
    read_header,
    read_image,
    write_png,
)
from bench.codec.msh import (
    DecodedLatent,
    MSHCodec,
    decode_latent,
    encode,
    load_codec,
    pad,
    padded_size,
    synthesize,
    synthesize_batch,
    training_latent,
    unpad,
)

__all__ = [
    "Bitstream",
    "DecodedLatent",
    "EncodeResult",
    "MSHCodec",
    "bitstream_paths",
    "codec_for_streams",
    "decode_dir",
    "decode_file",
    "decode_latent",
    "decode_path",
    "encode",
    "encode_dir",
    "encode_file",
    "encode_path",
    "load_codec",
    "pack",
    "pad",
    "padded_size",
    "read_header",
    "read_image",
    "synthesize",
    "synthesize_batch",
    "training_latent",
    "unpack",
    "unpad",
    "write_png",
]
