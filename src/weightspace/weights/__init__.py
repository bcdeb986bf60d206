"""Weight-space geometry of the deltas: between methods, against seed twins and controls, relative to W0; inspect."""
