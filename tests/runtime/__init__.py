"""Tests of flowforge.runtime."""
