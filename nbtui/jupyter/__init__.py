"""Talking to Jupyter: REST, kernel channels, discovery of local servers."""
