"""Safety: blocks, reports and the report threshold that hides a profile pending review."""
