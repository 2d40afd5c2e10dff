"""mripkg: a reproducible companion to Han et al., "On Instabilities of Unsupervised Denoising
Diffusion Models in Magnetic Resonance Imaging Reconstruction" (MICCAI 2024)."""

__version__ = "0.1.0"
