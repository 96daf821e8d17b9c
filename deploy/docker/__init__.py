"""The Docker Compose stack: the image's usage text, its set-up step and the database's first-run script."""
