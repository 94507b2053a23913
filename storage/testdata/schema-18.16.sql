-- bookkeeping
CREATE TABLE IF NOT EXISTS `gridwatch`.`schema_migrations`
(
    `version` UInt32,
    `name` String,
    `applied` DateTime DEFAULT now()
)
ENGINE = MergeTree
ORDER BY version;

-- migration 0001: telemetry
CREATE TABLE IF NOT EXISTS `gridwatch`.`telemetry`
(
    `ts` Int64,
    `received` Int64,
    `device` String,
    `grid` String,
    `metric` String,
    `value` Float64,
    `date` Date MATERIALIZED toDate(toDateTime(intDiv(ts, 1000)), 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (device, metric, ts);

-- migration 0002: rejected
CREATE TABLE IF NOT EXISTS `gridwatch`.`rejected`
(
    `ts` Int64,
    `device` String,
    `topic` String,
    `reason` String,
    `detail` String,
    `payload` String,
    `date` Date MATERIALIZED toDate(toDateTime(intDiv(ts, 1000)), 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (device, ts);

-- migration 0003: devices
CREATE TABLE IF NOT EXISTS `gridwatch`.`devices`
(
    `id` String,
    `type` String,
    `grid` String,
    `lat` Float64,
    `lon` Float64,
    `name` String,
    `updated` Int64
)
ENGINE = ReplacingMergeTree(updated)
ORDER BY id;

-- migration 0004: registry
CREATE TABLE IF NOT EXISTS `gridwatch`.`registry`
(
    `kind` String,
    `key` String,
    `doc` String,
    `updated` Int64
)
ENGINE = ReplacingMergeTree(updated)
ORDER BY (kind, key);

-- migration 0005: device_status
CREATE TABLE IF NOT EXISTS `gridwatch`.`device_status`
(
    `ts` Int64,
    `device` String,
    `status` String,
    `reason` String,
    `date` Date MATERIALIZED toDate(toDateTime(intDiv(ts, 1000)), 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (device, ts);

-- migration 0006: alerts
CREATE TABLE IF NOT EXISTS `gridwatch`.`alerts`
(
    `id` String,
    `revision` UInt64,
    `version` UInt64,
    `rule` String,
    `device` String,
    `grid` String,
    `members` Array(String),
    `category` String,
    `unit` String,
    `severity` String,
    `base_severity` String,
    `condition` String,
    `status` String,
    `summary` String,
    `value` Float64,
    `count` UInt64,
    `pending_since` Int64,
    `fired` Int64,
    `refired` Int64,
    `last_seen` Int64,
    `cleared` Int64,
    `acked` Int64,
    `dispatched` Int64,
    `resolved` Int64,
    `closed` Int64,
    `ack_due` Int64,
    `resolve_due` Int64,
    `next_reminder` Int64,
    `updated` Int64,
    `ack_overdue` UInt8,
    `resolve_overdue` UInt8,
    `escalated` UInt8
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY id;

-- migration 0007: alert_events
CREATE TABLE IF NOT EXISTS `gridwatch`.`alert_events`
(
    `ts` Int64,
    `alert_id` String,
    `version` UInt64,
    `actor` String,
    `kind` String,
    `from_state` String,
    `to_state` String,
    `note` String,
    `date` Date MATERIALIZED toDate(toDateTime(intDiv(ts, 1000)), 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (alert_id, version);

-- migration 0008: camera_health
CREATE TABLE IF NOT EXISTS `gridwatch`.`camera_health`
(
    `ts` Int64,
    `camera` String,
    `grid` String,
    `kind` String,
    `transport` String,
    `status` String,
    `detail` String,
    `rechecked` UInt8,
    `duration_ms` Float64,
    `latency_ms` Float64,
    `first_frame_ms` Float64,
    `first_keyframe_ms` Float64,
    `codec` String,
    `profile` String,
    `width` UInt32,
    `height` UInt32,
    `nominal_fps` Float64,
    `fps` Float64,
    `bitrate_kbps` Float64,
    `keyframe_interval_s` Float64,
    `frames` UInt64,
    `packets` UInt64,
    `packets_lost` UInt64,
    `loss_pct` Float64,
    `jitter_ms` Float64,
    `frozen` UInt8,
    `error` String,
    `date` Date MATERIALIZED toDate(toDateTime(intDiv(ts, 1000)), 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (camera, ts);

-- migration 0009: batch_ledger
ALTER TABLE `gridwatch`.`telemetry` ADD COLUMN `batch` String DEFAULT '';

-- migration 0010: silences
CREATE TABLE IF NOT EXISTS `gridwatch`.`silences`
(
    `id` String,
    `revision` UInt64,
    `rule` String,
    `device` String,
    `grid` String,
    `maintenance` UInt8,
    `ends` Int64,
    `actor` String,
    `reason` String
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY id;

-- migration 0011: case_events
CREATE TABLE IF NOT EXISTS `gridwatch`.`case_events`
(
    `ts` Int64,
    `case_id` String,
    `seq` UInt32,
    `actor` String,
    `role` String,
    `kind` String,
    `from_status` String,
    `to_status` String,
    `unit` String,
    `grid` String,
    `category` String,
    `source` String,
    `due` Int64,
    `note` String,
    `evidence` Array(String),
    `satisfaction` UInt8,
    `date` Date MATERIALIZED toDate(toDateTime(intDiv(ts, 1000)), 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (case_id, seq);

-- migration 0012: cases
CREATE TABLE IF NOT EXISTS `gridwatch`.`cases`
(
    `id` String,
    `revision` UInt64,
    `version` UInt32,
    `status` String,
    `source` String,
    `category` String,
    `grid` String,
    `unit` String,
    `received` Int64,
    `updated` Int64,
    `overdue` UInt8,
    `doc` String
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY id;

-- migration 0013: camera_pictures
ALTER TABLE `gridwatch`.`camera_health`
    ADD COLUMN `pictures` UInt32 DEFAULT 0,
    ADD COLUMN `luma` Float64 DEFAULT 0,
    ADD COLUMN `contrast` Float64 DEFAULT 0,
    ADD COLUMN `sharpness` Float64 DEFAULT 0,
    ADD COLUMN `noise_sigma` Float64 DEFAULT 0,
    ADD COLUMN `cast_ratio` Float64 DEFAULT 0,
    ADD COLUMN `frame_diff` Float64 DEFAULT -1,
    ADD COLUMN `referenced` UInt8 DEFAULT 0,
    ADD COLUMN `ref_correlation` Float64 DEFAULT 0,
    ADD COLUMN `occluded_pct` Float64 DEFAULT 0,
    ADD COLUMN `signal_loss` UInt8 DEFAULT 0,
    ADD COLUMN `blur` UInt8 DEFAULT 0,
    ADD COLUMN `too_dark` UInt8 DEFAULT 0,
    ADD COLUMN `too_bright` UInt8 DEFAULT 0,
    ADD COLUMN `color_cast` UInt8 DEFAULT 0,
    ADD COLUMN `noise` UInt8 DEFAULT 0,
    ADD COLUMN `occlusion` UInt8 DEFAULT 0,
    ADD COLUMN `scene_change` UInt8 DEFAULT 0;
