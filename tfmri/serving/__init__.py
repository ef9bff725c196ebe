"""Serving: the SavedModel export, the TF Serving client logic and batch reconstruction."""
