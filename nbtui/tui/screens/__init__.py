"""The TUI's screens and modal dialogs."""
