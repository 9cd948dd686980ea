"""The model and the domain rules: frozen data, what states and orphans mean, units and the one sanitiser. Pure code."""
