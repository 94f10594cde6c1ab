"""Tests for keras_tricks.lr_finder, one test module per module."""
