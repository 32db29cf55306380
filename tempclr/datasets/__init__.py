"""Datasets.  ``FairseqMMDataset`` (in ``fairseqmmdataset``) is imported by the fairseq task only."""
from .mmdataset import MMDataset

__all__ = ["MMDataset"]
