"""Evaluators, predictors and metrics, looked up by class name from the config."""
from .evaluator import Evaluator
from .metric import CrossTaskMetric, FullVideoBGRetrievalMetric, FullVideoRetrievalMetric, Metric, RetrievalMetric
from .predictor import Predictor
from .crosstask_predictor import CrossTaskPredictor
from .predictor import BGRetrievalPredictor, RetrievalPredictor
from .qa import QAMetric, QAPredictor
from .coin import COINActionSegmentationMetric, COINPredictor, COINZSPredictor
from .didemo import DiDeMoMetric, DiDeMoPredictor
