#!/usr/bin/python3
"""gst-rtsp-cameras.py PORT: third-party test cameras for the picture
diagnosis, served by GStreamer's gst-rtsp-server (Debian
gir1.2-gst-rtsp-server-1.0): rtsp://127.0.0.1:PORT/PICTURE-CODEC for each
picture (healthy, frozen, black, blurred) and codec (h264 with x264enc,
h265 with x265enc), 320x240 at 25 fps, a keyframe a second. Prints "ready"
once it listens; runs until killed."""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

# A moving pattern is a healthy camera: SMPTE bars scrolling sideways.
MOVING = "videotestsrc is-live=true pattern=smpte horizontal-speed=3"
PICTURES = {
    "healthy": MOVING,
    # One picture, frozen and encoded again and again.
    "frozen": "videotestsrc pattern=smpte num-buffers=1 ! imagefreeze is-live=true",
    "black": "videotestsrc is-live=true pattern=black",
    "blurred": MOVING + " ! videoconvert ! gaussianblur sigma=5",
}
ENCODERS = {
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bframes=0"
    " ! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=-1",
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=25"
    " ! rtph265pay name=pay0 pt=96 config-interval=-1",
}
CAPS = "video/x-raw,width=320,height=240,framerate=25/1"


def main():
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(sys.argv[1])
    mounts = server.get_mount_points()
    for picture, source in PICTURES.items():
        for codec, encoder in ENCODERS.items():
            factory = GstRtspServer.RTSPMediaFactory()
            factory.set_launch(f"( {source} ! videoconvert ! videoscale ! {CAPS} ! videoconvert"
                               f" ! video/x-raw,format=I420 ! {encoder} )")
            factory.set_shared(True)
            mounts.add_factory(f"/{picture}-{codec}", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{sys.argv[1]}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
