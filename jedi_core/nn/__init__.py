"""Neural networks: blocks, encoder, EDM diffusion, reward/termination model, actor-critic."""
