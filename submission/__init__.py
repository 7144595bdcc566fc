"""Submission runtime: a frozen bundle and a test folder in, a submission CSV out.

This package is what runs inside the submission image (``python -m submission``). It depends on
torch, timm, numpy, pandas, pillow and safetensors only, and never on the host-side ``builder``.
"""

__version__ = "0.1.0"
