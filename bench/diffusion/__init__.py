"""Conditional diffusion decoder: noise schedules, latent decoder, UNet, training, the samplers
and the decode pipeline."""
