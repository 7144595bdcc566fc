"""Host side: the ``builder`` CLI that packs fold checkpoints into a bundle and an image, and validates it."""

__version__ = "0.1.0"
