package gb28181

import "github.com/prometheus/client_golang/prometheus"

// metrics are the registrar's Prometheus series. They carry reasons,
// methods and transports, never device ids, addresses or credentials.
type metrics struct {
	responses   *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	keepalives  prometheus.Counter
	transitions *prometheus.CounterVec
	alarms      prometheus.Counter
	queries     *prometheus.CounterVec
	dropped     prometheus.Counter
	devices     *prometheus.GaugeVec
	streams     *prometheus.CounterVec
	streaming   prometheus.Gauge
	psErrors    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_gb28181_responses_total",
			Help: "SIP responses the registrar sent, by request method and status code.",
		}, []string{"method", "code"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_gb28181_rejected_total",
			Help: "SIP messages refused, by reason: malformed_sip, bad_device_id, unknown_device, no_password, bad_authorization, wrong_username, wrong_password, auth_failure_ban, not_registered, source_mismatch, bad_content_type, too_large, malformed_manscdp.",
		}, []string{"reason"}),
		keepalives: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_gb28181_keepalives_total",
			Help: "Keepalive notifications accepted.",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_gb28181_transitions_total",
			Help: "Registered devices going online or offline, by reason.",
		}, []string{"to", "reason"}),
		alarms: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_gb28181_alarms_total",
			Help: "Alarm notifications accepted.",
		}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_gb28181_queries_total",
			Help: "MANSCDP messages sent to devices: Catalog and DeviceInfo queries, alarm responses; by command and result (sent: the device took it with 200; answered: the device's response to a query arrived).",
		}, []string{"cmd", "result"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_gb28181_records_dropped_total",
			Help: "Presence changes and alarms of devices that could not be stored.",
		}),
		devices: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gridwatch_gb28181_devices",
			Help: "Registered GB/T 28181 devices, by state (online, offline: registered but silent).",
		}, []string{"state"}),
		streams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_gb28181_streams_total",
			Help: "Streams of channels invited to play (INVITE), by result: ok, no_answer (no final answer in gb28181.invite_timeout), refused, bad_answer (no PS over RTP in the SDP answer), no_rtp (nothing in gb28181.stream_timeout), stopped, hung_up, bad_ps, unsupported_stream, error; bye_failed counts BYEs not answered, late_answer 200 OKs to INVITEs given up, acknowledged and hung up at once.",
		}, []string{"result"}),
		streaming: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gridwatch_gb28181_streams_playing",
			Help: "Streams of channels playing now.",
		}),
		psErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_gb28181_stream_errors_total",
			Help: "RTP packets and frames of invited streams dropped, by reason: wrong_source (from another host than the device's SIP source or its SDP answer's c= address; over TCP, a connection), wrong_ssrc (another SSRC than the answer's y=), bad_rtp (not RTP), bad_ps (a frame that is not readable MPEG-PS), frame_too_large (a frame beyond 4 MiB).",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.responses, m.rejected, m.keepalives, m.transitions, m.alarms, m.queries, m.dropped, m.devices,
			m.streams, m.streaming, m.psErrors)
	}
	return m
}
