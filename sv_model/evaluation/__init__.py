"""Metrics and evaluators, kept apart from the training code (as in StyleGAN3's metrics package)."""
