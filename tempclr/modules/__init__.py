from .retri import VectorRetriever
from .vectorpool import VectorPool, VideoVectorPool

__all__ = ["VectorRetriever", "VectorPool", "VideoVectorPool"]
