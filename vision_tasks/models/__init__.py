"""Backbones, shared layers and the backbone + head model."""
