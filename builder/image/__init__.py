"""Image wing: the Docker engine, the pinned environment, reproducible layers -> the submission image."""
