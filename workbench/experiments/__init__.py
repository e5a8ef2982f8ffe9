"""The computations behind each paper notebook (the notebooks only call these and plot)."""
