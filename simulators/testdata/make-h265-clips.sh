#!/bin/sh
# make-h265-clips.sh regenerates the camera farm's H.265 clips with ffmpeg's
# libx265: 50 frames of test pattern at 25 fps, 4:2:0 (Main profile), a
# keyframe every second, no B-frames (the farm stamps frames in decode
# order, as IP cameras send them) and parameter sets before every keyframe.
set -eu
cd "$(dirname "$0")"
for size in 320x240 640x360; do
  ffmpeg -v error -y -f lavfi -i "testsrc=size=$size:rate=25" -frames:v 50 -pix_fmt yuv420p \
    -c:v libx265 -preset fast \
    -x265-params log-level=error:keyint=25:min-keyint=25:bframes=0:scenecut=0:repeat-headers=1:info=0 \
    -f hevc "cam-$size.h265"
done
