"""Validate wing: run an image as graders do -> check its CSV -> score it -> the report."""
