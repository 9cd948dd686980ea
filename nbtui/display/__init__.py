"""What every front end shows the same way: columns, cell text, the JSON report, kernel output as text. Pure code, no Textual."""
