"""Export wing: a packed submission -> what a platform takes (an image archive, a model tarball)."""
