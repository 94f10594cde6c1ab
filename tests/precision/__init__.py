"""Tests for keras_tricks.precision, one test module per module."""
