package rtsp

import (
	"slices"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"

	"github.com/gridwatch/gridwatch/ingest"
)

// Table is the ClickHouse table of camera health records.
const Table = "camera_health"

// Status classifies the outcome of one probe.
type Status string

// The statuses a probe reports. Every status but StatusOK and
// StatusDegraded means the camera does not deliver usable video.
const (
	// StatusOK means the camera answered and, for a sample, streamed
	// decodable video at its nominal rate.
	StatusOK Status = "ok"
	// StatusUnreachable means no TCP connection or no answer in time.
	StatusUnreachable Status = "unreachable"
	// StatusRefused means the connection was actively refused or reset.
	StatusRefused Status = "refused"
	// StatusAuthFailed means the camera rejected the credentials, asked for
	// some that are not configured, or has a stored password this node
	// cannot decrypt (Error says why).
	StatusAuthFailed Status = "auth_failed"
	// StatusNotFound means the camera does not know the stream path.
	StatusNotFound Status = "not_found"
	// StatusNoVideoTrack means the session description has no video media.
	StatusNoVideoTrack Status = "no_video_track"
	// StatusUnsupportedCodec means the video is in a codec the prober does
	// not measure (H.264 and H.265 are measured); Codec names it.
	StatusUnsupportedCodec Status = "unsupported_codec"
	// StatusStalled means PLAY succeeded but no frame, or no frame for a
	// while, arrived during the sample.
	StatusStalled Status = "stalled"
	// StatusDegraded means video arrives but with a low frame rate, packet
	// loss or a fault of the picture (a Condition); Detail says which.
	StatusDegraded Status = "degraded"
	// StatusError is any other protocol failure; Error says what.
	StatusError Status = "error"
)

// Up reports whether s means the camera delivers video.
func (s Status) Up() bool { return s == StatusOK || s == StatusDegraded }

// Kind is what a probe checked.
type Kind string

// The probe kinds.
const (
	// KindLiveness is a cheap OPTIONS + DESCRIBE.
	KindLiveness Kind = "liveness"
	// KindSample is a DESCRIBE + SETUP + PLAY of a few seconds of video.
	KindSample Kind = "sample"
)

// HealthRecord is one probe of one camera: a row of camera_health. Numbers
// that a probe could not measure are zero.
type HealthRecord struct {
	// TS is when the probe started, in ms since the epoch.
	TS int64
	// Camera and Grid identify the camera.
	Camera, Grid string
	// Kind is what the probe checked.
	Kind Kind
	// Transport is "tcp" or "udp" for samples, empty for liveness.
	Transport string
	// Status classifies the outcome.
	Status Status
	// Detail says why a degraded camera is degraded ("low_fps,loss").
	Detail string
	// Rechecked is true when the status was confirmed by a quick recheck
	// after a first failure.
	Rechecked bool
	// DurationMs is how long the probe took.
	DurationMs float64
	// LatencyMs is the RTSP response time of DESCRIBE.
	LatencyMs float64
	// FirstFrameMs and FirstKeyframeMs are the times from PLAY to the first
	// complete frame and to the first keyframe.
	FirstFrameMs, FirstKeyframeMs float64
	// Codec is the video codec from the session description ("H264",
	// "H265").
	Codec string
	// Profile is the profile from the SPS: H.264 "baseline", "main",
	// "high"…, H.265 "main", "main10", "rext"….
	Profile string
	// Width and Height are the picture size from the SPS.
	Width, Height uint32
	// NominalFPS is the frame rate the SPS announces; FPS is the measured one.
	NominalFPS, FPS float64
	// BitrateKbps is the measured video bitrate.
	BitrateKbps float64
	// KeyframeIntervalS is the measured time between keyframes.
	KeyframeIntervalS float64
	// Frames, Packets and PacketsLost count what the sample received.
	Frames, Packets, PacketsLost uint64
	// LossPct is PacketsLost over packets expected, in percent.
	LossPct float64
	// JitterMs is the RTP interarrival jitter (RFC 3550).
	JitterMs float64
	// Frozen is true when the picture looks frozen: consecutive frames
	// carry identical bytes, or the decoded keyframes barely differ.
	Frozen bool
	// Pictures counts the keyframes the picture diagnosis decoded; the
	// picture fields below are zero when it is 0.
	Pictures uint32
	// Conditions are the faults the diagnosis found in the pictures, in
	// the order of Conditions.
	Conditions []Condition
	// Luma and Contrast are the mean and standard deviation of the
	// pictures' luma (0-255); Sharpness the variance of its Laplacian;
	// NoiseSigma the estimated noise; CastRatio the chroma's distance from
	// grey over its spread. Each is the mean over the decoded pictures.
	Luma, Contrast, Sharpness, NoiseSigma, CastRatio float64
	// FrameDiff is the largest mean absolute luma difference between
	// consecutive pictures (or, with one picture, from the previous
	// sample's last): -1 when none could be compared.
	FrameDiff float64
	// Referenced is true when the pictures were compared with the camera's
	// reference (its last picture without a condition); RefCorrelation is
	// then their correlation, 1 for the same scene.
	Referenced     bool
	RefCorrelation float64
	// OccludedPct is the share of the picture found covered, in percent.
	OccludedPct float64
	// Error is the failure text, with credentials redacted.
	Error string
}

// Schema is the Arrow schema of camera_health batches. Field names are the
// ClickHouse column names.
var Schema = arrow.NewSchema(append([]arrow.Field{
	{Name: "ts", Type: arrow.FixedWidthTypes.Timestamp_ms},
	{Name: "camera", Type: arrow.BinaryTypes.String},
	{Name: "grid", Type: arrow.BinaryTypes.String},
	{Name: "kind", Type: arrow.BinaryTypes.String},
	{Name: "transport", Type: arrow.BinaryTypes.String},
	{Name: "status", Type: arrow.BinaryTypes.String},
	{Name: "detail", Type: arrow.BinaryTypes.String},
	{Name: "rechecked", Type: arrow.FixedWidthTypes.Boolean},
	{Name: "duration_ms", Type: arrow.PrimitiveTypes.Float64},
	{Name: "latency_ms", Type: arrow.PrimitiveTypes.Float64},
	{Name: "first_frame_ms", Type: arrow.PrimitiveTypes.Float64},
	{Name: "first_keyframe_ms", Type: arrow.PrimitiveTypes.Float64},
	{Name: "codec", Type: arrow.BinaryTypes.String},
	{Name: "profile", Type: arrow.BinaryTypes.String},
	{Name: "width", Type: arrow.PrimitiveTypes.Uint32},
	{Name: "height", Type: arrow.PrimitiveTypes.Uint32},
	{Name: "nominal_fps", Type: arrow.PrimitiveTypes.Float64},
	{Name: "fps", Type: arrow.PrimitiveTypes.Float64},
	{Name: "bitrate_kbps", Type: arrow.PrimitiveTypes.Float64},
	{Name: "keyframe_interval_s", Type: arrow.PrimitiveTypes.Float64},
	{Name: "frames", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "packets", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "packets_lost", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "loss_pct", Type: arrow.PrimitiveTypes.Float64},
	{Name: "jitter_ms", Type: arrow.PrimitiveTypes.Float64},
	{Name: "frozen", Type: arrow.FixedWidthTypes.Boolean},
	{Name: "error", Type: arrow.BinaryTypes.String},
	{Name: "pictures", Type: arrow.PrimitiveTypes.Uint32},
	{Name: "luma", Type: arrow.PrimitiveTypes.Float64},
	{Name: "contrast", Type: arrow.PrimitiveTypes.Float64},
	{Name: "sharpness", Type: arrow.PrimitiveTypes.Float64},
	{Name: "noise_sigma", Type: arrow.PrimitiveTypes.Float64},
	{Name: "cast_ratio", Type: arrow.PrimitiveTypes.Float64},
	{Name: "frame_diff", Type: arrow.PrimitiveTypes.Float64},
	{Name: "referenced", Type: arrow.FixedWidthTypes.Boolean},
	{Name: "ref_correlation", Type: arrow.PrimitiveTypes.Float64},
	{Name: "occluded_pct", Type: arrow.PrimitiveTypes.Float64},
}, conditionFields()...), nil)

// conditionColumns are the conditions with a boolean column of their own,
// named as the condition: all but frozen, which is the frozen column.
var conditionColumns = slices.DeleteFunc(slices.Clone(Conditions), func(c Condition) bool { return c == CondFrozen })

// firstConditionField is the index of the first condition column.
var firstConditionField = len(Schema.Fields()) - len(conditionColumns)

func conditionFields() []arrow.Field {
	out := make([]arrow.Field, len(conditionColumns))
	for i, c := range conditionColumns {
		out[i] = arrow.Field{Name: string(c), Type: arrow.FixedWidthTypes.Boolean}
	}
	return out
}

// AppendRecord appends r to a builder of Schema.
func AppendRecord(b *array.RecordBuilder, r HealthRecord) {
	b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(r.TS))
	for i, s := range []string{r.Camera, r.Grid, string(r.Kind), r.Transport, string(r.Status), r.Detail} {
		b.Field(1 + i).(*array.StringBuilder).Append(s)
	}
	b.Field(7).(*array.BooleanBuilder).Append(r.Rechecked)
	for i, f := range []float64{r.DurationMs, r.LatencyMs, r.FirstFrameMs, r.FirstKeyframeMs} {
		b.Field(8 + i).(*array.Float64Builder).Append(f)
	}
	b.Field(12).(*array.StringBuilder).Append(r.Codec)
	b.Field(13).(*array.StringBuilder).Append(r.Profile)
	b.Field(14).(*array.Uint32Builder).Append(r.Width)
	b.Field(15).(*array.Uint32Builder).Append(r.Height)
	for i, f := range []float64{r.NominalFPS, r.FPS, r.BitrateKbps, r.KeyframeIntervalS} {
		b.Field(16 + i).(*array.Float64Builder).Append(f)
	}
	for i, n := range []uint64{r.Frames, r.Packets, r.PacketsLost} {
		b.Field(20 + i).(*array.Uint64Builder).Append(n)
	}
	b.Field(23).(*array.Float64Builder).Append(r.LossPct)
	b.Field(24).(*array.Float64Builder).Append(r.JitterMs)
	b.Field(25).(*array.BooleanBuilder).Append(r.Frozen)
	b.Field(26).(*array.StringBuilder).Append(r.Error)
	b.Field(27).(*array.Uint32Builder).Append(r.Pictures)
	for i, f := range []float64{r.Luma, r.Contrast, r.Sharpness, r.NoiseSigma, r.CastRatio, r.FrameDiff} {
		b.Field(28 + i).(*array.Float64Builder).Append(f)
	}
	b.Field(34).(*array.BooleanBuilder).Append(r.Referenced)
	b.Field(35).(*array.Float64Builder).Append(r.RefCorrelation)
	b.Field(36).(*array.Float64Builder).Append(r.OccludedPct)
	for i, c := range conditionColumns {
		b.Field(firstConditionField + i).(*array.BooleanBuilder).Append(r.Has(c))
	}
}

// Diagnosed reports whether the picture diagnosis judged r's pictures:
// it decoded some, or found that none decodes.
func (r HealthRecord) Diagnosed() bool { return r.Pictures > 0 || r.Has(CondSignalLoss) }

// Has reports whether the diagnosis found condition c.
func (r HealthRecord) Has(c Condition) bool { return slices.Contains(r.Conditions, c) }

// RecordSize estimates the Arrow bytes of r: 24 fixed-width numbers, the
// booleans and nine strings with their offsets.
func RecordSize(r HealthRecord) int {
	const offset = 4
	return 24*8 + 3 + len(conditionColumns) + 9*offset + len(r.Camera) + len(r.Grid) + len(r.Kind) + len(r.Transport) +
		len(r.Status) + len(r.Detail) + len(r.Codec) + len(r.Profile) + len(r.Error)
}

// NewBatcher returns a batcher of health records for the camera_health
// table that hands its batches to write. Set other settings before Start.
func NewBatcher(write ingest.WriteFunc) *ingest.Batcher[HealthRecord] {
	return &ingest.Batcher[HealthRecord]{
		Table:     Table,
		Schema:    Schema,
		AppendRow: AppendRecord,
		RowSize:   RecordSize,
		Write:     write,
	}
}
