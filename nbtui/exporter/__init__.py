"""The Prometheus exporter front end."""
