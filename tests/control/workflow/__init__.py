"""Tests of flowforge.control.workflow."""
