"""Tests of the first-party connectors under connectors/."""
