"""The measuring stick: compare a folder of reconstructions with a folder of references.

- :mod:`bench.metrics.weights` — where the LPIPS/DISTS/FID backbones' weights come from.
- :mod:`bench.metrics.fidelity` — PSNR and MS-SSIM on 8-bit images.
- :mod:`bench.metrics.perceptual` — LPIPS (AlexNet) and DISTS modules.
- :mod:`bench.metrics.distribution` — the FID patch protocol, Inception features, FID and KID.
- :mod:`bench.metrics.columns` — the protocol-named FID/KID column names (light: the report reads them).
- :mod:`bench.metrics.aggregate` — bootstrap CIs and table writing.
- :mod:`bench.metrics.evaluate` — folders in, the per-image and summary tables out.
- :mod:`bench.commands.metrics` — ``python -m bench metrics``.

This package imports neither the codec nor the diffusion decoder.
"""
