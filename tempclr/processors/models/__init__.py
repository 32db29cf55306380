"""Video networks used by the feature extractor (S3D-G)."""
from .s3dg import S3D, load_s3d

__all__ = ["S3D", "load_s3d"]
