"""``python -m builder``: the same CLI as the ``builder`` command."""

from builder.cli import app

app(prog_name="builder")
