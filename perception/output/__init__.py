"""Stage 5, outputs: the sinks (`sinks`: annotated video, event log, tracks.txt, window), the MP4 writer
(`video`), the run folder (`folder`) and monitoring over HTTP (`monitor/`)."""

from perception.output.sinks import EventLog, Sink, TracksFile, VideoSink

__all__ = ["EventLog", "Sink", "TracksFile", "VideoSink"]
