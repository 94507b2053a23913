#!/bin/sh
# make-picture-clips.sh regenerates the camera farm's picture-fault clips
# with ffmpeg (libx264 Constrained Baseline and libx265 Main): 50 frames at
# 25 fps, 320x240, 4:2:0, a keyframe every second, no B-frames, parameter
# sets before every keyframe, as make-h265-clips.sh makes the healthy ones.
# Each clip is ffmpeg's testsrc pattern with one fault applied, so that the
# fault is the ground truth of the diagnosis tests.
set -eu
cd "$(dirname "$0")"
S=size=320x240:rate=25
gen() { # name filtergraph [x264 rate control]
  rc=${3:--crf 23}
  ffmpeg -v error -y -f lavfi -i "$2" -frames:v 50 -pix_fmt yuv420p \
    -c:v libx264 -profile:v baseline $rc -g 25 -bf 0 -sc_threshold 0 -x264-params repeat-headers=1 \
    -f h264 "pic-$1.h264"
  ffmpeg -v error -y -f lavfi -i "$2" -frames:v 50 -pix_fmt yuv420p \
    -c:v libx265 -preset fast ${4:-} \
    -x265-params log-level=error:keyint=25:min-keyint=25:bframes=0:scenecut=0:repeat-headers=1:info=0 \
    -f hevc "pic-$1.h265"
}
# frozen: the first picture, encoded again and again (the bytes differ).
gen frozen  "testsrc=$S,trim=end_frame=1,loop=loop=-1:size=1:start=0"
# black: a uniform black picture, as a camera that lost its sensor signal.
gen black   "color=c=black:$S"
# blurred: out of focus.
gen blurred "testsrc=$S,gblur=sigma=4"
# tinted: desaturated and pushed to orange, as a failed colour channel.
gen tinted  "testsrc=$S,hue=s=0.35,colorbalance=rs=0.5:gs=0.1:bs=-0.5:rm=0.5:gm=0.1:bm=-0.5:rh=0.3:bh=-0.3"
# noisy: heavy temporal noise (snow), at a constant quantizer so that the
# encoder keeps it.
gen noisy   "testsrc=$S,noise=alls=100:allf=t+u" "-qp 34" "-qp 36"
# covered: the upper 60% behind a dark, flat cover.
gen covered "testsrc=$S,drawbox=x=0:y=0:w=iw:h=ih*0.6:color=0x181818:t=fill"
# dark and bright: under- and overexposed.
gen dark    "testsrc=$S,lutyuv=y=val*0.15:u=128+(val-128)*0.3:v=128+(val-128)*0.3"
gen bright  "testsrc=$S,lutyuv=y=215+val*0.15:u=128+(val-128)*0.5:v=128+(val-128)*0.5"
# moved: another scene (testsrc2), served once the camera was turned.
gen moved   "testsrc2=$S"
