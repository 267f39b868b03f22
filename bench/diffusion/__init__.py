"""Conditional diffusion decoder: noise schedules, latent decoder, UNet, training (see issue 14)."""
