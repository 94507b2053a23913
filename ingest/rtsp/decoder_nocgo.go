//go:build !cgo

package rtsp

import "fmt"

// Without cgo (CGO_ENABLED=0, the static build of the Dockerfile) there is
// no libavcodec: samples are measured as before but their pictures are not
// diagnosed, and gridwatch_camera_diagnosis_failed_total{reason="decoder"}
// counts them.

// pictureDecoder is absent from a build without cgo.
type pictureDecoder struct{}

// newPictureDecoder fails: the build has no decoder.
func newPictureDecoder(string, int) (*pictureDecoder, error) {
	return nil, fmt.Errorf("%w: %w", ErrDecoder, ErrNoDecoder)
}

func (*pictureDecoder) decode([]byte) (*picture, error) { return nil, ErrNoDecoder }

func (*pictureDecoder) drain() (*picture, error) { return nil, ErrNoDecoder }

func (*pictureDecoder) close() {}
