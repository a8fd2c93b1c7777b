"""Real-time video perception for driving scenes: frames in, detections, tracks and threats out."""

import os

# OpenCV's and FFmpeg's own log lines (e.g. "moov atom not found") would break the one-line error
# contract; the pipeline reports every failure itself. Set before cv2 is first imported; a user's
# own value wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")

__version__ = "0.1.0"
