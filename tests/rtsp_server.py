"""A real RTSP server on loopback for the live-source tests and benchmarks (GStreamer's rtsp-server).

    /usr/bin/python3 tests/rtsp_server.py CLIP --port PORT [--size WxH] [--loop]

Run it with Debian's own python3, the one the `gi` bindings are built for (packages `python3-gi`,
`gir1.2-gst-rtsp-server-1.0`, `gstreamer1.0-plugins-base/-good/-bad`), not the project's venv. It serves
the clip's H.264 as is at rtsp://127.0.0.1:PORT/live, paced at the clip's frame rate; every client gets
its own session from the clip's start. `--size` re-encodes at another resolution (openh264, from
-plugins-bad), so a camera that comes back changed can be simulated. `--loop` repeats the clip without
a break, with timestamps that keep increasing (for long runs). Prints `ready URL` once it is serving;
exits on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstApp, GstRtspServer  # noqa: E402

BYTE_STREAM = "video/x-h264,stream-format=byte-stream,alignment=au"


AccessUnit = tuple[bytes, int, int, int, bool]  # data, pts, dts, duration (ns), key frame


def read_access_units(clip: str) -> tuple[list[AccessUnit], int, str]:
    """The clip's H.264 access units with their timestamps, its duration in ns and their caps."""
    pipeline = Gst.parse_launch(
        f'filesrc location="{clip}" ! qtdemux ! h264parse ! {BYTE_STREAM} ! appsink name=sink sync=false'
    )
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    units: list[AccessUnit] = []
    caps = ""
    while (sample := sink.emit("pull-sample")) is not None:
        buf = sample.get_buffer()
        key = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        units.append((buf.extract_dup(0, buf.get_size()), buf.pts, buf.dts, buf.duration, key))
        caps = sample.get_caps().to_string()
    pipeline.set_state(Gst.State.NULL)
    if not units:
        raise SystemExit(f"no H.264 frames in {clip}")
    return units, units[-1][1] + units[-1][3] - units[0][1], caps


class LoopFeeder:
    """Feeds one client's appsrc with the clip again and again, shifting timestamps each round."""

    def __init__(self, appsrc: GstApp.AppSrc, units: list[AccessUnit], duration_ns: int) -> None:
        self.appsrc, self.units, self.duration_ns = appsrc, units, duration_ns
        self.position = 0
        appsrc.connect("need-data", self.need_data)

    def need_data(self, appsrc: GstApp.AppSrc, _length: int) -> None:
        data, pts, dts, duration, key = self.units[self.position % len(self.units)]
        shift = self.position // len(self.units) * self.duration_ns
        buffer = Gst.Buffer.new_wrapped(data)  # a new buffer each time: Gst.Buffer.copy() shares one
        buffer.pts = pts + shift
        buffer.dts = dts + shift if dts != Gst.CLOCK_TIME_NONE else dts
        buffer.duration = duration
        if not key:
            buffer.set_flags(Gst.BufferFlags.DELTA_UNIT)
        self.position += 1
        appsrc.emit("push-buffer", buffer)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", help="re-encode at WxH, e.g. 640x360")
    parser.add_argument("--loop", action="store_true", help="repeat the clip without end")
    args = parser.parse_args()

    Gst.init(None)
    if args.loop:
        units, duration_ns, caps = read_access_units(args.clip)
        head = f'appsrc name=src is-live=false format=time caps="{caps}" ! h264parse'
    else:
        head = f'filesrc location="{args.clip}" ! qtdemux ! h264parse'
    middle = ""
    if args.size:
        width, height = (int(v) for v in args.size.lower().split("x"))
        middle = (
            f" ! openh264dec ! videoconvert ! videoscale ! video/x-raw,format=I420,width={width},"
            f"height={height} ! openh264enc bitrate=2000000 complexity=low ! h264parse"
        )
    launch = f"( {head}{middle} ! rtph264pay name=pay0 pt=96 config-interval=1 )"

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(False)  # every client starts the clip from its beginning
    feeders: list[LoopFeeder] = []
    if args.loop:

        def configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
            feeders.append(LoopFeeder(media.get_element().get_by_name("src"), units, duration_ns))
            del feeders[:-8]  # keep the recent clients' feeders alive, not every one ever

        factory.connect("media-configure", configure)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print(f"ready rtsp://127.0.0.1:{args.port}/live", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
