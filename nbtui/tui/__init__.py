"""The Textual app: the only package of nbtui that imports textual."""
