from .retri import VectorRetriever
from .vectorpool import DistributedVectorPool, DistributedVideoVectorPool, VectorPool, VideoVectorPool

__all__ = ["VectorRetriever", "VectorPool", "VideoVectorPool", "DistributedVectorPool", "DistributedVideoVectorPool"]
