"""Inputs of a run: the test folder's images (listed, matched to ids, decoded) and their preprocessing."""
