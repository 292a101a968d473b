"""Tests of flowforge.control."""
