"""Stage 1, frames in: video files and image folders (`files`), cameras and streams with reconnects
(`live`)."""

from perception.sources.files import IMAGE_SUFFIXES, Source, open_source

__all__ = ["IMAGE_SUFFIXES", "Source", "open_source"]
