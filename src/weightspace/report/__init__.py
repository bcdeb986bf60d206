"""The paper's claims as data, the figures, the seed-noise bands and the reproduction check."""
