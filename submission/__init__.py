"""Submission runtime: a frozen bundle and a test folder in, a submission CSV out.

This package is what runs inside the submission image (``python -m submission``). It depends on numpy, pandas
and pillow, on torch, timm and safetensors for eager models only (``models.eager``: an image whose models all run
on an engine has none of them), and never on the host-side ``builder``.

Importing it turns off what the libraries it loads would fetch on their own: albumentations checks PyPI for a
newer version when it is imported (``NO_ALBUMENTATIONS_UPDATE``), Hugging Face's hub looks models up online
(``HF_HUB_OFFLINE``). Every process of the runtime and of the builder imports this package first.
"""

import os as _os
import time as _time

STARTED = _time.time()  # when the runtime's process began: deadlines count from here

for _name in ("NO_ALBUMENTATIONS_UPDATE", "HF_HUB_OFFLINE"):
    _os.environ.setdefault(_name, "1")

__version__ = "0.1.0"
