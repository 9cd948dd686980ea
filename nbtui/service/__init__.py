"""The headless service: the one fleet, its loop, and the actions submitted to it. Front ends sit on this."""
