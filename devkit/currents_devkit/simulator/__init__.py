"""A local Amplitude-compatible endpoint (HTTP V2 and Batch) with Movable Ink's and Remerge's APIs."""
