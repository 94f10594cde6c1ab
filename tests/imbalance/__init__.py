"""Tests for keras_tricks.imbalance, one test module per module."""
