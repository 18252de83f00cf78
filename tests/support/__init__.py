"""Helpers shared by the test suites: guest-side drivers and fixtures that stand in for a guest."""
