"""The runtime: one stream's processor (`processor`: tracking, ranging, TTC, warning per frame), the threads
and queues (`pipeline`), each stream's inbox and the cross-stream batcher (`batching`), and which streams a
run has (`streams`)."""

from perception.runtime.pipeline import Pipeline, RunSummary, StageError, Stream
from perception.runtime.processor import FrameProcessor, build_processor

__all__ = ["FrameProcessor", "Pipeline", "RunSummary", "StageError", "Stream", "build_processor"]
