"""Tasks, looked up by class name from ``config.task``.  (The fairseq adapter, ``fairseqmmtask``, is imported
by fairseq itself or by :func:`tempclr.register_fairseq`.)"""
from .alignlocaltask import AlignLocalTask
from .alignretritask import AlignRetriTask
from .retritask import RetriTask, VideoRetriTask
from .task import Task

__all__ = ["Task", "RetriTask", "VideoRetriTask", "AlignLocalTask", "AlignRetriTask"]
