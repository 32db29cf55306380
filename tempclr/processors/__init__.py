"""Processors and aligners, looked up by class name from ``config.dataset``."""
from .how2processor import (OverlappedAligner, ShardedHow2MetaProcessor, ShardedTextProcessor,
                            ShardedVideoProcessor, VariedLenAligner)
from .how2retriprocessor import (ShardedHow2VideoRetriMetaProcessor, ShardedVideoRetriTextProcessor,
                                 ShardedVideoRetriVideoProcessor, VideoRetriAligner, VideoRetriOverlappedAligner)
from .processor import Aligner, MetaProcessor, Processor, TextProcessor, VideoProcessor
from .dsprocessor import (CrossTaskAligner, CrossTaskMetaProcessor, CrossTaskTextProcessor, CrossTaskVideoProcessor,
                          DSAligner, YoucookFullVideoBGAligner, YoucookFullVideoBGMetaProcessor,
                          YoucookFullVideoBGProcessor, YoucookFullVideoBGTextProcessor, YoucookMetaProcessor,
                          YoucookVideoProcessor)
from .dedupprocessor import CaptionDedupProcessor, dedup_caption
from .msrvtt import (MSRVTTMetaProcessor, MSRVTTQAAligner, MSRVTTQAMetaProcessor, MSRVTTQATextProcessor,
                     MSRVTTTextProcessor)
from .coin import (COINActionSegmentationAligner, COINActionSegmentationMetaProcessor,
                   COINActionSegmentationTextProcessor)
from .didemo import DiDeMoAligner, DiDeMoMetaProcessor, DiDeMoTextProcessor
