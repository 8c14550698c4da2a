"""Metrics shared by tasks (COCOeval for boxes and masks)."""
