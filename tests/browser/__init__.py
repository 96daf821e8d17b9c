"""The hub console in real Chromium against the running hub, broker and database."""
